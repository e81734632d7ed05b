"""Log records a stage emits are kept with its stage execution, in order and bounded."""

import logging
import threading

import pytest
from langchain_core.runnables.config import var_child_runnable_config

from pipeline import stagelogs
from pipeline.models import RunStatus
from pipeline.selectors import log_lines
from pipeline.services import start_run
from tests.conftest import require_postgres

pytestmark = pytest.mark.usefixtures("sync_queue")


def chatty(records: int):
    run = start_run(graph="chatty", input={"records": records})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return run


def test_stage_logs_are_kept_in_order_with_level_and_extras():
    run = chatty(3)

    stage = run.stages.get(stage_name="chatty")
    lines = log_lines(run)
    assert [line.message for line in lines] == ["record 1 of 3", "record 2 of 3", "record 3 of 3"]
    assert {line.stage_order for line in lines} == {stage.stage_order}
    assert [line.seq for line in lines] == [1, 2, 3]
    assert {line.level_name for line in lines} == {"INFO"}
    assert lines[0].logger == "tests.chatty" and lines[0].extra == {"index": 1}
    assert lines[0].created_at is not None


def test_a_stage_that_logs_too_much_is_capped_and_says_so(settings):
    settings.GAMED_STAGE_LOG_LIMIT = 1000
    run = chatty(100_000)

    lines = log_lines(run)
    assert len(lines) == 1001
    last = lines[-1]
    assert last.level_name == "WARNING"
    assert "99000 more log records were dropped" in last.message
    assert last.extra == {"dropped": 99000}


def test_gamed_stages_explain_their_choices():
    run = start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"})
    run.refresh_from_db()

    router = run.stages.get(stage_name="router")
    (choice,) = log_lines(run, stage_order=router.stage_order)
    assert choice.message.startswith("Chose label_diagram")
    warnings = log_lines(run, min_level=30)
    assert warnings and all(line.level_name == "WARNING" for line in warnings)
    assert any("too many items" in line.message for line in warnings)


def test_a_failed_run_ends_failed_even_when_its_last_stage_row_cannot_be_stored():
    # The run's end is written with its last stage rows; when Postgres refuses one of those
    # rows (a NUL in the stage's logs), the end is still recorded on its own.
    require_postgres()
    run = start_run(graph="chatty", input={"records": 1, "nul": True, "fail": True})
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED
    assert run.error_message == "RuntimeError: chatty failed"
    assert run.lease_expires_at is None


def test_a_run_ends_failed_when_an_earlier_stage_row_could_not_be_stored():
    # chatty's row fails in its own batch while quiet_again still runs: the run stops with the
    # cause at its next event and its end is written although the writer holds the error.
    require_postgres()
    run = start_run(graph="chatty", input={"records": 1, "nul": True, "linger": 0.5})
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED
    assert "DataError" in run.error_message or "ValueError" in run.error_message, run.error_message
    assert run.lease_expires_at is None


def test_a_stage_logging_from_many_threads_keeps_the_limit_and_counts_every_record(settings):
    settings.GAMED_STAGE_LOG_LIMIT = 500
    capture = stagelogs.capture()
    capture.start_stage("threads-run", "task-1")
    config = {
        "configurable": {"gamed_run_id": "threads-run"},
        "metadata": {"langgraph_checkpoint_ns": "busy:task-1"},
    }
    log = logging.getLogger("tests.threads")
    log.setLevel(logging.INFO)

    def busy(thread: int) -> None:
        var_child_runnable_config.set(config)
        for i in range(300):
            log.info("thread %d record %d", thread, i)

    threads = [threading.Thread(target=busy, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = capture.collect("threads-run", "task-1")

    kept, closing = records[:-1], records[-1]
    assert len(kept) == 500
    assert closing["extra"] == {"dropped": 8 * 300 - 500}
    assert capture.collect("threads-run", "task-1") == []
