"""The runs list, the stage list and the inbox: live while anything shown is pending or
running, and per-row Retry / Cancel for those who may use them."""

from django.urls import reverse

from pipeline.models import RunStatus, StageStatus
from tests.console import make_run
from tests.test_admin_console import queries_for

CHANGELIST = "/admin/pipeline/pipelinerun/"
STAGES = "/admin/pipeline/stageexecution/"
LIVE = 'id="live-list" class="console-live" data-live="1"'
QUIET = 'data-live="0"'


def test_runs_list_is_live_while_a_run_it_shows_is_active(operator_client):
    make_run(status=RunStatus.FAILED, failed_at=2)
    make_run(status=RunStatus.RUNNING, stages=2, subject="still going")

    everything = operator_client.get(CHANGELIST)
    finished_only = operator_client.get(CHANGELIST, {"status__exact": "failed"})

    assert LIVE in everything.text and "observability/live-list.js" in everything.text
    assert QUIET in finished_only.text


def test_stage_list_is_live_while_a_stage_it_shows_runs(operator_client):
    run = make_run(status=RunStatus.RUNNING, stages=2)
    run.stages.filter(stage_order=2).update(status=StageStatus.RUNNING)

    assert LIVE in operator_client.get(STAGES).text
    assert QUIET in operator_client.get(STAGES, {"status__exact": "succeeded"}).text


def test_inbox_is_live_while_runs_execute(operator_client):
    assert QUIET in operator_client.get(reverse("admin:pipeline_pipelinerun_inbox")).text
    make_run(status=RunStatus.PENDING, stages=0)
    assert LIVE in operator_client.get(reverse("admin:pipeline_pipelinerun_inbox")).text


def test_runs_list_offers_retry_and_cancel_per_row_to_an_operator(operator_client):
    failed = make_run(status=RunStatus.FAILED, failed_at=3)
    running = make_run(status=RunStatus.RUNNING, stages=2)
    failed_row = failed.stages.get(status=StageStatus.FAILED)

    page = operator_client.get(CHANGELIST).text

    retry = reverse("admin:pipeline_pipelinerun_retry", args=[failed.pk])
    cancel = reverse("admin:pipeline_pipelinerun_cancel", args=[running.pk])
    assert f'href="{retry}?stage={failed_row.pk}" class="row-action row-action-retry"' in page
    assert f'href="{cancel}" class="row-action row-action-cancel"' in page
    assert page.count("row-action-retry") == 1 and page.count("row-action-cancel") == 1


def test_runs_list_offers_a_viewer_no_row_actions(viewer_client):
    make_run(status=RunStatus.FAILED, failed_at=3)
    make_run(status=RunStatus.RUNNING, stages=2)
    page = viewer_client.get(CHANGELIST).text
    assert 'class="row-action' not in page


def _questions(count: int) -> None:
    for _ in range(count):
        run = make_run(status=RunStatus.WAITING, stages=2)
        run.questions.create(interrupt_id=f"i-{run.pk}", stage_name="review", value="Publish?")


def test_stage_list_and_inbox_query_counts_are_the_same_for_few_and_many_runs(operator_client):
    inbox = reverse("admin:pipeline_pipelinerun_inbox")
    _questions(2)
    make_run(status=RunStatus.RUNNING, stages=3)
    operator_client.get(STAGES)
    few = (queries_for(operator_client, STAGES), queries_for(operator_client, inbox))
    _questions(20)
    for _ in range(20):
        make_run(status=RunStatus.FAILED, failed_at=4)
    many = (queries_for(operator_client, STAGES), queries_for(operator_client, inbox))
    assert many == few
