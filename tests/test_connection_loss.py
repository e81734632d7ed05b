"""Connections a worker keeps (Django's, the stage writer's, the checkpoint pool's) may die
between runs, e.g. when Postgres restarts; the next run must not pay for it."""

import pytest
from django.db import connection

from pipeline.models import RunStatus
from pipeline.services import start_run
from tests.conftest import require_postgres

pytestmark = pytest.mark.usefixtures("sync_queue")
PLANT = {"question": "Label the parts of a plant cell"}


def run_once():
    run = start_run(graph="gamed", input=PLANT)
    run.refresh_from_db()
    return run


def test_next_run_succeeds_after_the_database_dropped_every_other_connection():
    require_postgres()
    assert run_once().status == RunStatus.SUCCEEDED

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 2, "the writer and the checkpoint pool were connected"

    run = run_once()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.stages.count() == 8
