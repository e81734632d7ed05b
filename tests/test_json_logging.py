"""GAMED_LOG_FORMAT=json: one JSON object per record, with the run and stage it came from."""

import io
import json
import logging
import subprocess
import sys

import pytest

from gamed_console.logging import JsonFormatter, RunContextFilter
from pipeline.graphs import faults
from pipeline.services import start_run
from tests.conftest import ROOT, child_env

KEYS = {"time", "level", "logger", "message", "run_id", "stage"}


@pytest.fixture
def json_lines():
    """Captures every record the way the console handler does with GAMED_LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RunContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.fixture
def stages_log(monkeypatch):
    """Every stage logs one record of its own while it runs."""
    apply_fault = faults.apply_fault

    def logging_apply_fault(stage, spec, config):
        logging.getLogger("tests.stage").warning("working in %s", stage)
        apply_fault(stage, spec, config)

    monkeypatch.setattr(faults, "apply_fault", logging_apply_fault)


def test_record_logged_inside_a_gamed_stage_carries_run_id_and_stage(
    sync_queue, stages_log, json_lines
):
    logging.getLogger("tests.outside").warning("before the run")
    run = start_run(
        graph="gamed",
        input={
            "question": "Label the parts of a plant cell",
            "faults": {"scene_generator": "fail_always"},
        },
    )

    lines = json_lines()
    assert all(line.keys() >= KEYS for line in lines)
    by_message = {line["message"]: line for line in lines}
    outside = by_message["before the run"]
    assert outside["run_id"] is None and outside["stage"] is None
    assert outside["level"] == "WARNING" and outside["logger"] == "tests.outside"
    planner = by_message["working in game_planner"]
    assert planner["run_id"] == str(run.pk)
    assert planner["stage"] == "game_planner"
    assert planner["logger"] == "tests.stage"
    staged = [line["stage"] for line in lines if line["logger"] == "tests.stage"]
    assert staged == [
        "input_enhancer",
        "domain_knowledge_retriever",
        "router",
        "game_planner",
        "scene_generator",
    ]
    (failed,) = [line for line in lines if line["logger"] == "pipeline.runner"]
    assert failed["run_id"] == str(run.pk) and failed["stage"] is None


def test_parallel_stages_log_their_own_stage(sync_queue, stages_log, json_lines):
    run = start_run(graph="fanout", input={})

    stages = {
        line["message"].removeprefix("working in "): (line["run_id"], line["stage"])
        for line in json_lines()
        if line["logger"] == "tests.stage"
    }
    assert stages == {name: (str(run.pk), name) for name in ("split", "left", "right", "join")}


def test_exception_text_is_in_the_line():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    RunContextFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "failed here"
    assert line["run_id"] is None
    assert "ValueError: boom" in line["exception"] and "Traceback" in line["exception"]


SCRIPT = """
import logging
import django
django.setup()
log = logging.getLogger("gamed.check")
log.info("hello %s", "world")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("it broke")
"""


def run_script(log_format: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=child_env(GAMED_LOG_FORMAT=log_format),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_setting_switches_the_console_handler_to_json_lines():
    out = run_script("json")

    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "hello world"),
        ("ERROR", "it broke"),
    ]
    assert all(line.keys() >= KEYS and line["run_id"] is None for line in lines)
    assert "ZeroDivisionError" in lines[1]["exception"]


@pytest.mark.django_db
def test_plain_is_the_default_and_unknown_formats_are_refused():
    plain = run_script("plain")
    assert plain.returncode == 0, plain.stderr
    assert " INFO gamed.check hello world" in plain.stderr

    bad = run_script("yaml")
    assert bad.returncode != 0
    assert "GAMED_LOG_FORMAT must be plain or json" in bad.stderr


@pytest.mark.parametrize(("level", "per_task_lines"), [("INFO", True), ("WARNING", False)])
def test_queue_log_level_setting_applies_to_the_task_queue_logger(level, per_task_lines):
    code = "import logging; print(logging.getLogger('django-q').isEnabledFor(logging.INFO))"
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=child_env(GAMED_QUEUE_LOG_LEVEL=level),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(per_task_lines)
