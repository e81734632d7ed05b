"""The stage statistics page: executions, failure rate, p50/p95, retry success, outcomes per day."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus
from pipeline.selectors import percentile, run_outcomes_by_day, stage_statistics
from tests.console import login, make_run, staff_user

STATS = "/admin/pipeline/pipelinerun/stats/"


def timed_rows(run: PipelineRun, name: str, durations: list[int], status=StageStatus.SUCCEEDED):
    first = (run.stages.order_by("-stage_order").values_list("stage_order", flat=True).first()) or 0
    StageExecution.objects.bulk_create(
        StageExecution(
            run=run, stage_name=name, stage_order=first + i + 1, status=status, duration_ms=ms
        )
        for i, ms in enumerate(durations)
    )


def test_percentile_interpolates_like_percentile_cont():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None


def test_stage_statistics_on_this_database(db):
    run = make_run(stages=0)
    timed_rows(run, "router", list(range(1, 101)))
    timed_rows(run, "router", [5000] * 25, status=StageStatus.FAILED)
    timed_rows(run, "router", [0] * 10, status=StageStatus.REUSED)
    timed_rows(run, "game_planner", [40])
    [planner, router] = stage_statistics()
    assert (router.stage_name, router.executions, router.failures) == ("router", 125, 25)
    assert router.failure_rate == pytest.approx(0.2)
    durations = sorted([*range(1, 101), *[5000] * 25])
    assert router.p50_ms == pytest.approx(percentile(durations, 0.5))
    assert router.p95_ms == pytest.approx(percentile(durations, 0.95))
    assert (planner.executions, planner.p50_ms, planner.p95_ms) == (1, 40, 40)


def test_retry_success_counts_finished_retries_from_each_stage(db):
    root = make_run(status=RunStatus.FAILED, failed_at=5)
    for status in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING):
        make_run(
            status=status,
            stages=1,
            parent_run=root,
            root_run=root,
            retry_depth=1,
            retry_from_stage="scene_generator",
        )
    scene = next(s for s in stage_statistics() if s.stage_name == "scene_generator")
    assert (scene.retries, scene.retries_finished, scene.retries_succeeded) == (4, 3, 2)
    assert scene.retry_success_rate == pytest.approx(2 / 3)


def test_statistics_window_leaves_out_older_runs(db):
    old = make_run(stages=2)
    PipelineRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    make_run(stages=1)
    recent = {
        s.stage_name: s.executions
        for s in stage_statistics(since=timezone.now() - timedelta(days=30))
    }
    everything = {s.stage_name: s.executions for s in stage_statistics()}
    assert recent == {"input_enhancer": 1}
    assert everything == {"input_enhancer": 2, "domain_knowledge_retriever": 1}


def test_run_outcomes_per_day_cover_the_last_14_days(db):
    make_run(status=RunStatus.SUCCEEDED, stages=0)
    make_run(status=RunStatus.FAILED, stages=0)
    three_days = make_run(status=RunStatus.FAILED, stages=0, graph="test_chain")
    too_old = make_run(status=RunStatus.FAILED, stages=0)
    now = timezone.now()
    PipelineRun.objects.filter(pk=three_days.pk).update(created_at=now - timedelta(days=3))
    PipelineRun.objects.filter(pk=too_old.pk).update(created_at=now - timedelta(days=20))
    outcomes = run_outcomes_by_day(days=14)
    assert list(outcomes) == ["gamed", "test_chain"]
    assert all(len(days) == 14 for days in outcomes.values())
    assert outcomes["gamed"][-1] == (timezone.localdate(), {"succeeded": 1, "failed": 1})
    assert outcomes["test_chain"][-4][1] == {"failed": 1}
    assert sum(sum(counts.values()) for _, counts in outcomes["gamed"]) == 2


def test_stats_page_is_linked_from_the_admin_index_and_shows_both_tables(viewer_client):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    make_run(parent_run=run, root_run=run, retry_depth=1, retry_from_stage="router", stages=1)
    index = viewer_client.get("/admin/")
    assert f'href="{STATS}" id="stage-stats-link"' in index.text
    page = viewer_client.get(STATS)
    assert page.status_code == 200
    assert 'id="stats-router"' in page.text
    assert "1/1 (100.0%)" in page.text
    assert 'id="outcomes-gamed"' in page.text
    assert viewer_client.get(STATS, {"days": "all"}).status_code == 200
    retries = viewer_client.get("/admin/pipeline/pipelinerun/", {"retry_from_stage": "router"})
    assert retries.context["cl"].result_count == 1


def test_stats_page_needs_the_view_permission(db):
    assert login(staff_user("nobody")).get(STATS).status_code == 403
