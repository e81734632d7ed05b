"""/metrics: Prometheus text that matches the database, at a constant query cost."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from pipeline.models import (
    FINAL_RUN_STATUSES,
    AuditAction,
    AuditRecord,
    PipelineRun,
    RunStatus,
    StageExecution,
    StageStatus,
    Surface,
)
from pipeline.services import Actor, cancel_run, reap_runs, resume_run, retry_run, start_run
from tests.helpers import scrape

PLANT = {"question": "Label the parts of a plant cell"}


def by(samples: dict[tuple, float], *keys: str) -> dict[tuple, float]:
    return {tuple(dict(labels)[k] for k in keys): value for labels, value in samples.items()}


def interrupted_run(**fields) -> PipelineRun:
    """A run whose worker died: running, with a lease that expired a minute ago."""
    past = timezone.now() - timedelta(minutes=1)
    return PipelineRun.objects.create(
        graph="gamed",
        input=PLANT,
        status=RunStatus.RUNNING,
        worker="gone:1",
        started_at=past,
        heartbeat_at=past,
        lease_expires_at=past,
        attempts=1,
        **fields,
    )


@pytest.fixture
def mixed_runs(sync_queue, metrics_token):
    """Succeeded, failed, retried (one retry succeeds, one fails), interrupted and resumed runs,
    one run still running, and one task waiting on the queue."""
    start_run(graph="gamed", input=PLANT)
    start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"})
    always = start_run(graph="gamed", input={**PLANT, "faults": {"scene_generator": "fail_always"}})
    once = start_run(graph="gamed", input={**PLANT, "faults": {"scene_generator": "fail_once"}})
    always.refresh_from_db()
    once.refresh_from_db()
    retry_run(run=always, from_stage="scene_generator")
    retry_run(run=once, from_stage="scene_generator")

    stays_interrupted, resumed = interrupted_run(), interrupted_run()
    assert len(reap_runs(auto_resume=False)) == 2
    resume_run(run=resumed, actor=Actor(via=Surface.CLI))

    now = timezone.now()
    PipelineRun.objects.create(
        graph="gamed",
        input=PLANT,
        status=RunStatus.RUNNING,
        worker="alive:1",
        started_at=now - timedelta(seconds=45),
        heartbeat_at=now - timedelta(seconds=30),
        lease_expires_at=now + timedelta(seconds=30),
    )
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="waiting", lock=now - timedelta(seconds=1))
    stays_interrupted.refresh_from_db()
    resumed.refresh_from_db()
    assert stays_interrupted.status == RunStatus.INTERRUPTED
    assert resumed.status == RunStatus.SUCCEEDED


def test_counters_match_the_database_after_a_mix_of_runs(mixed_runs):
    samples = scrape()

    runs = PipelineRun.objects.filter(graph="gamed")
    assert by(samples["gamed_runs_started_total"], "graph") == {("gamed",): runs.count()}
    finished = runs.filter(status__in=FINAL_RUN_STATUSES).values_list("status")
    expected_finished = {(s,): n for s, n in finished.annotate(n=Count("id"))}
    assert by(samples["gamed_runs_finished_total"], "status") == expected_finished
    assert expected_finished == {("succeeded",): 4, ("failed",): 3}
    assert by(samples["gamed_runs"], "status")[("interrupted",)] == 1
    assert by(samples["gamed_runs"], "status")[("running",)] == 1

    failed_stages = StageExecution.objects.filter(status=StageStatus.FAILED)
    expected_failures = {
        (stage,): n for stage, n in failed_stages.values_list("stage_name").annotate(n=Count("id"))
    }
    failures = {k: v for k, v in by(samples["gamed_stage_failures_total"], "stage").items() if v}
    assert failures == expected_failures == {("scene_generator",): 3}

    executed = StageExecution.objects.exclude(status=StageStatus.REUSED).filter(
        duration_ms__isnull=False
    )
    counts = by(samples["gamed_stage_duration_seconds_count"], "stage")
    assert counts == {
        (stage,): n for stage, n in executed.values_list("stage_name").annotate(n=Count("id"))
    }
    assert StageExecution.objects.filter(status=StageStatus.REUSED).exists()
    sums = by(samples["gamed_stage_duration_seconds_sum"], "stage")
    for (stage,), total in sums.items():
        expected = sum(executed.filter(stage_name=stage).values_list("duration_ms", flat=True))
        assert total == pytest.approx(expected / 1000)
    buckets = by(samples["gamed_stage_duration_seconds_bucket"], "stage", "le")
    for (stage,), n in counts.items():
        bounds = sorted(
            (float(le), value) for (name, le), value in buckets.items() if name == stage
        )
        assert bounds[-1] == (float("inf"), n)
        assert [v for _, v in bounds] == sorted(v for _, v in bounds)

    assert by(samples["gamed_retries_total"], "stage") == {("scene_generator",): 2}
    assert by(samples["gamed_retries_finished_total"], "stage", "outcome") == {
        ("scene_generator", "succeeded"): 1,
        ("scene_generator", "failed"): 1,
    }
    reaped = AuditRecord.objects.filter(action=AuditAction.REAP).count()
    assert (
        by(samples["gamed_runs_interrupted_total"], "graph")
        == {("gamed",): reaped}
        == {("gamed",): 2}
    )
    assert by(samples["gamed_runs_resumed_total"], "via") == {("cli",): 1}
    assert samples["gamed_queue_depth"][()] == 1
    assert 30 <= samples["gamed_oldest_running_heartbeat_age_seconds"][()] < 120


def test_scrape_query_count_does_not_grow_with_runs(sync_queue, metrics_token):
    start_run(graph="gamed", input={**PLANT, "faults": {"scene_generator": "fail_always"}})

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape()
        return len(captured)

    few = queries()
    for i in range(5):
        run = start_run(graph="gamed", input={"question": f"Which planet is number {i}?"})
        run.refresh_from_db()
        retry_run(run=run, from_stage="router")
    interrupted_run()
    reap_runs(auto_resume=False)

    assert PipelineRun.objects.count() == 12
    assert queries() == few <= 6


def test_scrape_of_an_empty_database_reports_zero(db, metrics_token):
    samples = scrape()

    assert samples["gamed_queue_depth"][()] == 0
    assert samples["gamed_oldest_running_heartbeat_age_seconds"][()] == 0
    assert "gamed_runs_started_total" not in samples


def counters() -> dict[tuple, float]:
    return {
        (name, labels): value
        for name, samples in scrape().items()
        if name.endswith("_total") or name.endswith("_count") or name.endswith("_bucket")
        for labels, value in samples.items()
    }


def test_no_counter_goes_down_when_runs_are_resumed_cancelled_and_retried(
    sync_queue, metrics_token
):
    once = start_run(graph="gamed", input={**PLANT, "faults": {"router": "fail_once"}})
    stale = interrupted_run()
    reap_runs(auto_resume=False)
    before = counters()

    resume_run(run=stale)
    retry = retry_run(run=PipelineRun.objects.get(pk=once.pk), from_stage="router")
    cancel_run(run=PipelineRun.objects.create(graph="gamed", input=PLANT))
    after = counters()

    went_down = {
        key: (value, after.get(key, 0))
        for key, value in before.items()
        if after.get(key, 0) < value
    }
    assert not went_down
    retry.refresh_from_db()
    assert retry.status == RunStatus.SUCCEEDED
    assert after[("gamed_runs_resumed_total", (("graph", "gamed"), ("via", "system")))] == 1
