"""Checkpoint retention: old finished runs lose their checkpoints, nothing else does."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from pipeline.models import PipelineRun, ResumeMode, RunStatus
from pipeline.retention import thread_usage
from pipeline.services import prune_checkpoints, retry_run, start_run

PLANT = "Label the parts of a plant cell"


@pytest.fixture
def runs(monkeypatch, transactional_db):
    monkeypatch.setattr(Conf, "SYNC", True)

    def gamed(days_old: int, **faults) -> PipelineRun:
        run = start_run(graph="gamed", input={"question": PLANT, "faults": faults})
        PipelineRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now() - timedelta(days=days_old)
        )
        run.refresh_from_db()
        return run

    old_ok = gamed(40)
    old_failed = gamed(40, scene_generator="fail_always")
    recent = gamed(2)
    busy_chain = gamed(40, router="fail_always")
    # A retry of it is still queued: its whole chain must keep its checkpoints.
    monkeypatch.setattr(Conf, "SYNC", False)
    retry_run(run=busy_chain, from_stage="router")
    monkeypatch.setattr(Conf, "SYNC", True)
    return {"old_ok": old_ok, "old_failed": old_failed, "recent": recent, "busy": busy_chain}


def rows(run: PipelineRun) -> int:
    return thread_usage([run.thread_id]).total_rows


def test_prune_removes_only_old_finished_runs_outside_active_chains(runs):
    before = {name: rows(run) for name, run in runs.items()}
    assert all(before.values())

    report = prune_checkpoints(older_than=timedelta(days=30))

    assert report.runs == 2
    assert sum(report.rows.values()) == before["old_ok"] + before["old_failed"]
    assert report.bytes > 0
    assert rows(runs["old_ok"]) == 0 and rows(runs["old_failed"]) == 0
    assert rows(runs["recent"]) == before["recent"]
    assert rows(runs["busy"]) == before["busy"]
    pruned = PipelineRun.objects.filter(checkpoints_pruned_at__isnull=False)
    assert set(pruned.values_list("pk", flat=True)) == {runs["old_ok"].pk, runs["old_failed"].pk}
    assert runs["old_ok"].stages.count() == 8, "run and stage rows stay"

    again = prune_checkpoints(older_than=timedelta(days=30))
    assert again.runs == 0 and sum(again.rows.values()) == 0


def test_dry_run_reports_without_deleting(runs):
    before = rows(runs["old_ok"])
    report = prune_checkpoints(older_than=timedelta(days=30), dry_run=True, batch_size=1)

    assert report.runs == 2
    assert rows(runs["old_ok"]) == before
    assert not PipelineRun.objects.filter(checkpoints_pruned_at__isnull=False).exists()


def test_retry_of_a_pruned_run_falls_back_to_a_full_rerun(runs):
    prune_checkpoints(older_than=timedelta(days=30))

    retry = retry_run(run=runs["old_failed"], from_stage="scene_generator")
    retry.refresh_from_db()

    assert retry.resume_mode == ResumeMode.FULL_RERUN
    assert "missing or unreadable" in retry.resume_note
    assert retry.status == RunStatus.FAILED  # the fault is still in the input: fail_always


def test_prune_command_prints_what_it_removed(runs):
    out = StringIO()
    call_command("prune_checkpoints", "--older-than", "30d", "--batch-size", "1", stdout=out)

    text = out.getvalue()
    assert "Checkpoints of 2 finished run(s) older than 30 days, 0:00:00 removed" in text
    assert "checkpoints" in text and "B" in text


def test_migrate_creates_the_daily_retention_schedule(db):
    schedule = Schedule.objects.get(func="pipeline.tasks.prune_checkpoints")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1


def test_run_page_says_checkpoints_were_pruned_and_how_a_retry_resumed(runs, admin_client):
    prune_checkpoints(older_than=timedelta(days=30))
    retry = retry_run(run=runs["old_failed"], from_stage="scene_generator")

    page = admin_client.get(runs["old_failed"].admin_path).text
    assert 'id="run-pruned"' in page and "starts again from its input" in page
    retry_page = admin_client.get(retry.admin_path).text
    assert "Resumed full rerun from the original input" in retry_page
    assert "missing or unreadable" in retry_page
