"""Log records a stage emits are kept with its stage execution, in order and bounded."""

import pytest

from pipeline.models import RunStatus, StageLog
from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")


def chatty(records: int):
    run = start_run(graph="chatty", input={"records": records})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return run


def test_stage_logs_are_kept_in_order_with_level_and_extras():
    run = chatty(3)

    stage = run.stages.get(stage_name="chatty")
    logs = list(StageLog.objects.filter(run=run, stage_order=stage.stage_order))
    assert [log.message for log in logs] == ["record 1 of 3", "record 2 of 3", "record 3 of 3"]
    assert [log.seq for log in logs] == [1, 2, 3]
    assert {log.level_name for log in logs} == {"INFO"}
    assert logs[0].logger == "tests.chatty" and logs[0].extra == {"index": 1}
    assert logs[0].created_at is not None
    assert not StageLog.objects.filter(run=run).exclude(stage_order=stage.stage_order).exists()


def test_a_stage_that_logs_too_much_is_capped_and_says_so(settings):
    settings.GAMED_STAGE_LOG_LIMIT = 1000
    run = chatty(100_000)

    logs = StageLog.objects.filter(run=run).order_by("seq")
    assert logs.count() == 1001
    last = logs.last()
    assert last.level_name == "WARNING"
    assert "99000 more log records were dropped" in last.message
    assert last.extra == {"dropped": 99000}


def test_gamed_stages_explain_their_choices():
    run = start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"})
    run.refresh_from_db()

    router = run.stages.get(stage_name="router")
    (choice,) = StageLog.objects.filter(run=run, stage_order=router.stage_order)
    assert choice.message.startswith("Chose label_diagram")
    rejected = StageLog.objects.filter(run=run, level_name="WARNING")
    assert any("too many items" in log.message for log in rejected)
