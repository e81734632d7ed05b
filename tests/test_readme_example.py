"""The examples in README.md and docs/api.md work as written, against a real worker."""

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User

from pipeline.models import PipelineRun, RunStatus, StageStatus
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.worker

# The run id the README's first-retry example shows; the test puts the real one in its place.
README_RUN_ID = "0b5c27e2"


def blocks(path: str, start: str, end: str) -> list[str]:
    text = (ROOT / path).read_text()
    section = text[text.index(start) : text.index(end)]
    return re.findall(r"```\n(.*?)```", section, flags=re.S)


def api_example_commands() -> str:
    found = blocks("docs/api.md", "**The example**", "**Endpoints.**")
    commands = [block for block in found if "curl" in block or "export" in block]
    assert len(commands) >= 3, "the API example lost its commands"
    return "\n".join(commands)


def first_retry_commands() -> list[str]:
    found = blocks("README.md", "## A first retry", "## Graphs the console runs")
    commands = [block for block in found if block.startswith("python manage.py")]
    assert len(commands) == 2, "the README's first retry lost its commands"
    return commands


def shell(script: str) -> subprocess.CompletedProcess:
    env = child_env()
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_readme_first_retry_runs_as_written(workers):
    workers.start()
    start, retry = first_retry_commands()

    started = shell(start)
    assert started.returncode == 1, started.stderr  # `--wait` exits 1: the run failed
    failed = PipelineRun.objects.get()
    assert failed.status == RunStatus.FAILED
    assert f"Run {failed.pk} failed" in started.stdout

    retried = shell(retry.replace(README_RUN_ID, failed.short_id))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"of run {failed.pk} from scene_generator" in retried.stdout
    new = PipelineRun.objects.get(parent_run=failed)
    assert new.status == RunStatus.SUCCEEDED
    assert new.stages.filter(status=StageStatus.REUSED).count() == 4
    assert PipelineRun.objects.with_recovery().get(pk=failed.pk).recovered_by_id == new.pk


def test_api_example_runs_as_written(workers, live_server):
    # What `make run` leaves behind: the `admin` superuser the example's key belongs to.
    User.objects.create_superuser("admin", password=None)
    workers.start()
    script = api_example_commands().replace("http://127.0.0.1:8000", live_server.url)
    # The example's stream and `sleep 2` assume a worker that is already up.
    result = shell(script)

    assert result.returncode == 0, result.stderr
    assert "event: run.ended" in result.stdout
    assert '"resume_mode":"checkpoint"' in result.stdout
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert [line[1:] for line in lines] == [
        ["succeeded", "1", "scene_generator"],
        ["failed", "0", ""],
    ]
