"""The console's figures and dead ends: progress counts, the retry preview's lists, a run's
history and the favicon."""

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from pipeline.graphs.gamed.state import STAGES
from pipeline.models import AuditRecord, PipelineRun, RunStatus, StageStatus
from pipeline.selectors import console_runs
from pipeline.services import Actor, cancel_run, start_run
from tests.console import make_run

CHANGELIST = "/admin/pipeline/pipelinerun/"


def pending_retry_of(parent: PipelineRun) -> PipelineRun:
    """A retry from scene_generator as services leave it before a worker takes it: four
    reused rows, nothing run yet."""
    retry = make_run(
        status=RunStatus.PENDING,
        stages=4,
        parent_run=parent,
        root_run=parent,
        retry_depth=1,
        retry_from_stage="scene_generator",
    )
    retry.stages.update(status=StageStatus.REUSED)
    PipelineRun.objects.filter(pk=retry.pk).update(started_at=None)
    return retry


def test_a_pending_retry_counts_the_stages_still_to_run(operator_client):
    parent = make_run(status=RunStatus.FAILED, failed_at=5)
    retry = pending_retry_of(parent)

    listed = operator_client.get(CHANGELIST, {"status__exact": "pending"})
    page = operator_client.get(retry.admin_path)

    expected = f"4/{len(STAGES)}"
    assert f'<td class="field-progress">{expected}</td>' in listed.text
    assert f'<span id="run-progress">{expected}</span>' in page.text


def test_a_resumed_run_that_succeeded_counts_the_stage_cut_short_once(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED, stages=8)
    cut_short, again = run.stages.filter(stage_order__in=(4, 5)).order_by("stage_order")
    cut_short.status, cut_short.task_id = StageStatus.INTERRUPTED, "task-4"
    cut_short.save()
    again.stage_name, again.task_id, again.attempt = cut_short.stage_name, "task-4", 2
    again.save()

    listed = operator_client.get(CHANGELIST)
    page = operator_client.get(run.admin_path)

    assert '<td class="field-progress">7/7</td>' in listed.text
    assert '<span id="run-progress">7/7</span>' in page.text
    annotated = console_runs().get(pk=run.pk)
    assert (annotated.stages_done, annotated.stage_count) == (7, 7)


@pytest.mark.usefixtures("sync_queue")
def test_retry_preview_puts_each_stage_in_one_list(operator_client):
    failed = start_run(
        graph="gamed",
        input={"question": "Order the planets", "faults": {"blueprint_validator": "fail_once"}},
    )
    failed.refresh_from_db()
    row = failed.stages.get(stage_name="blueprint_validator", status=StageStatus.FAILED)

    page = operator_client.post(
        reverse("admin:pipeline_pipelinerun_retry", args=[failed.pk]),
        {"stage": row.pk, "reason": "", "state_patch": "", "_preview": "1"},
    )

    plan = page.context["plan"]
    reused = {r.stage_name for r in plan.reused}
    assert "blueprint_generator" in reused
    assert plan.stages_to_run[0] == "blueprint_validator"
    assert not reused & set(plan.stages_to_run)
    assert plan.may_run_again == ["blueprint_generator"]
    will_run = page.text.split('id="retry-will-run">')[1].split("</td>")[0]
    assert "blueprint_generator" not in will_run and "output_renderer" in will_run
    assert PipelineRun.objects.count() == 1


@pytest.mark.usefixtures("sync_queue")
def test_history_shows_the_runs_audit_trail(operator_client, operator):
    run = start_run(graph="gamed", input={"question": "Label a cell"}, actor=Actor(user=operator))
    run.refresh_from_db()
    pending = make_run(status=RunStatus.PENDING, stages=0)
    cancel_run(run=pending, actor=Actor(user=operator), reason="wrong question")

    history = operator_client.get(reverse("admin:pipeline_pipelinerun_history", args=[run.pk]))
    cancelled = operator_client.get(
        reverse("admin:pipeline_pipelinerun_history", args=[pending.pk])
    )

    assert history.status_code == 200
    assert "change history" not in history.text
    assert '<table id="run-history">' in history.text and ">start<" in history.text
    assert ">cancel<" in cancelled.text and "wrong question" in cancelled.text
    assert AuditRecord.objects.count() == 2


def test_history_of_a_run_nobody_acted_on_says_so(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED)
    page = operator_client.get(reverse("admin:pipeline_pipelinerun_history", args=[run.pk]))
    assert page.status_code == 200 and 'id="run-history-empty"' in page.text


def test_every_admin_page_links_the_console_favicon(operator_client):
    page = operator_client.get(CHANGELIST)
    assert '<link rel="icon" type="image/svg+xml" href="/static/observability/favicon.svg">' in (
        page.text
    )
    assert finders.find("observability/favicon.svg")
