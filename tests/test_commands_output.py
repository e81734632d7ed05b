"""`runs` and `show_run` print what an operator needs; the plain admin shows runs and stages."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")


@pytest.fixture
def failed_run():
    run = start_run(
        graph="gamed",
        input={"question": "Label the parts of a plant cell", "faults": {"router": "fail_always"}},
    )
    run.refresh_from_db()
    return run


def call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_runs_lists_status_and_failed_stage(failed_run):
    text = call("runs")
    assert failed_run.short_id in text
    assert "failed" in text and "router" in text and "2/3" in text


def test_show_run_prints_stages_checkpoints_and_errors(failed_run):
    text = call("show_run", failed_run.short_id, "--tracebacks")
    first = failed_run.stages.get(stage_order=1)
    assert first.checkpoint_id in text and first.parent_checkpoint_id in text
    assert "InjectedFault: router: injected failure" in text
    assert "Traceback" in text
    assert failed_run.admin_path in text


def test_show_run_refuses_unknown_id():
    with pytest.raises(CommandError, match="No run with id 'deadbeef'"):
        call("show_run", "deadbeef")


def test_admin_lists_runs_and_shows_a_run(failed_run, admin_client):
    listing = admin_client.get("/admin/pipeline/pipelinerun/")
    assert listing.status_code == 200
    assert failed_run.subject in listing.text
    page = admin_client.get(failed_run.admin_path)
    assert page.status_code == 200
    assert "InjectedFault" in page.text
