"""Commands that only read runs start fast (without LangGraph), print what the operator needs
(stage execution ids, links to where the console really is), say the right thing when nothing
matches, and end quietly when their reader stops reading."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command

from pipeline.models import RunStatus
from tests.conftest import ROOT, child_env
from tests.console import make_run

# Runs the command in a fresh interpreter, then reports which heavy packages it imported:
# LangGraph and LangChain (seconds), django-ninja and pydantic (a tenth of the command).
IMPORTED_AFTER = """
import json, os, sys
from django.core.management import execute_from_command_line
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gamed_console.settings")
HEAVY = ("langgraph", "langchain", "ninja", "pydantic")
try:
    execute_from_command_line(["manage.py", *sys.argv[1:]])
finally:
    heavy = {m.split(".")[0] for m in sys.modules if m.startswith(HEAVY)}
    print(json.dumps(sorted(heavy)), file=sys.stderr)
"""


def call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("command", ["runs", "show_run"])
def test_read_commands_import_neither_langgraph_nor_the_api(transactional_db, command):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    args = [command] if command == "runs" else [command, run.short_id]
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER, *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert run.short_id in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_show_run_into_a_closed_pipe_ends_without_a_traceback(transactional_db):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already read what it wanted
    try:
        done = subprocess.run(
            [sys.executable, "manage.py", "show_run", run.short_id],
            cwd=ROOT,
            env=child_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1


def test_links_point_where_make_run_serves_the_console(transactional_db, tmp_path):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    (tmp_path / "console_url").write_text("http://127.0.0.1:8765\n")
    env = child_env(GAMED_VAR_DIR=str(tmp_path))
    env.pop("GAMED_BASE_URL", None)
    shown = subprocess.run(
        [sys.executable, "manage.py", "show_run", run.short_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"see http://127.0.0.1:8765{run.admin_path}" in shown.stdout, shown.stderr
    explicit = subprocess.run(
        [sys.executable, "manage.py", "show_run", run.short_id],
        cwd=ROOT,
        env={**env, "GAMED_BASE_URL": "https://console.example.org/"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"see https://console.example.org{run.admin_path}" in explicit.stdout


@pytest.mark.django_db
def test_runs_with_a_filter_that_matches_nothing_says_so(db):
    make_run(status=RunStatus.SUCCEEDED)
    assert call("runs", "--status", "failed").strip() == "No failed runs."
    assert call("runs", "--unrecovered").strip() == "No unrecovered failed runs."
    assert call("runs", "--status", "failed", "--graph", "gamed").strip() == (
        "No failed runs of graph gamed."
    )


@pytest.mark.django_db
def test_runs_on_an_empty_console_says_how_to_start_one(db):
    assert call("runs").startswith("No runs yet. Start one with:")


@pytest.mark.django_db
def test_show_run_prints_the_stage_execution_ids_retry_run_takes(db):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    text = call("show_run", run.short_id)
    header = next(line for line in text.splitlines() if line.startswith("#"))
    assert header.split()[:3] == ["#", "id", "stage"]
    for stage in run.stages.all():
        row = next(
            line for line in text.splitlines() if line.split()[:1] == [str(stage.stage_order)]
        )
        assert row.split()[1] == str(stage.pk)
    assert f"retry_run {run.short_id} --stage-execution <id>" in text
