"""Restarting Postgres under running pipelines leaves no run `running` and loses none."""

import os
import subprocess
import time

import pytest
from django.db import connection

from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus
from tests import services
from tests.conftest import DURABLE, require_postgres
from tests.test_durability import reap_until_done, start_runs, wait_until

pytestmark = pytest.mark.worker


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    url = os.environ.get("DATABASE_URL", "")
    wait_until(lambda: services.postgres_ok(url) is None, 60, "Postgres to accept connections")


def test_postgres_restart_during_runs_leaves_every_run_succeeded(workers):
    require_postgres()
    if not os.path.isdir("/etc/postgresql"):
        pytest.skip("needs a local Postgres cluster managed by pg_ctlcluster")
    workers.start()
    ids = start_runs(
        DURABLE,
        6,
        "gamed",
        {"question": "Label the parts of a plant cell", "faults": {"scene_generator": "sleep:2"}},
    )
    wait_until(
        lambda: StageExecution.objects.filter(
            run_id__in=ids, stage_name="scene_generator", status=StageStatus.RUNNING
        ).exists(),
        60,
        "a run inside its slow stage",
    )

    restart_postgres()
    connection.close()
    time.sleep(1)

    runs = reap_until_done(DURABLE, ids, timeout=240)
    assert all(run.status == RunStatus.SUCCEEDED for run in runs)
    assert not PipelineRun.objects.filter(status=RunStatus.RUNNING).exists()
