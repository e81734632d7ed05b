"""Claim, redelivery, cancel, resume and the reaper, driven in-process against the database."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from pipeline import tasks
from pipeline.exceptions import Conflict
from pipeline.graphs.faults import ledger_counts
from pipeline.models import (
    AuditAction,
    AuditRecord,
    PipelineRun,
    RunStatus,
    StageExecution,
    StageStatus,
)
from pipeline.services import cancel_run, reap_runs, rerun_run, resume_run, start_run

PLANT = {"question": "Label the parts of a plant cell"}


@pytest.fixture
def queued(transactional_db):
    """A pending run whose task sits in the queue (no worker)."""
    return start_run(graph="gamed", input=PLANT)


def execute(run) -> PipelineRun:
    tasks.execute_run(str(run.pk))
    run.refresh_from_db()
    return run


def test_cancelled_pending_run_never_starts(queued):
    cancel_run(run=queued, reason="not needed")

    run = execute(queued)

    assert run.status == RunStatus.CANCELLED
    assert not run.stages.exists() and ledger_counts([run.pk]) == {}


def test_redelivered_task_of_a_finished_run_does_nothing(queued):
    run = execute(queued)
    assert run.status == RunStatus.SUCCEEDED

    assert tasks.execute_run(str(run.pk)) == "not claimed (succeeded)"
    assert sum(ledger_counts([run.pk]).values()) == 8


def test_redelivered_task_of_a_run_running_elsewhere_does_nothing(queued):
    lease = timezone.now() + timedelta(minutes=5)
    PipelineRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.RUNNING, worker="elsewhere:1", lease_expires_at=lease
    )

    assert tasks.execute_run(str(queued.pk)) == "not claimed (running)"
    queued.refresh_from_db()
    assert queued.worker == "elsewhere:1" and ledger_counts([queued.pk]) == {}


def test_redelivered_task_takes_over_a_run_whose_worker_died(queued):
    run = execute(queued)
    # Make it look like a worker died inside output_renderer: its row still running.
    last = run.stages.get(stage_name="output_renderer")
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        worker="dead:1",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    StageExecution.objects.filter(pk=last.pk).update(status=StageStatus.RUNNING)

    run = execute(run)

    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2
    last.refresh_from_db()
    assert (
        last.status == StageStatus.INTERRUPTED
        and "stopped renewing its lease" in last.error_message
    )
    assert AuditRecord.objects.filter(run=run, action=AuditAction.REAP).count() == 1


def test_reaper_interrupts_expired_runs_and_auto_resumes_up_to_the_cap(queued, settings):
    settings.GAMED_MAX_AUTO_RESUMES = 1
    expired = timezone.now() - timedelta(seconds=1)
    PipelineRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.RUNNING, worker="dead:1", lease_expires_at=expired
    )

    reap_runs()
    queued.refresh_from_db()
    assert queued.status == RunStatus.PENDING and queued.auto_resumes == 1

    PipelineRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.RUNNING, worker="dead:2", lease_expires_at=expired
    )
    reap_runs()
    queued.refresh_from_db()
    assert queued.status == RunStatus.INTERRUPTED, "past the cap it waits for an operator"
    assert "dead:2 stopped renewing its lease" in queued.error_message


def test_reaper_leaves_runs_with_a_live_lease_alone(queued):
    lease = timezone.now() + timedelta(seconds=30)
    PipelineRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.RUNNING, worker="alive:1", lease_expires_at=lease
    )
    assert reap_runs() == []
    queued.refresh_from_db()
    assert queued.status == RunStatus.RUNNING


def test_reaper_requeues_a_run_whose_task_was_lost(queued, settings):
    settings.GAMED_REQUEUE_AFTER_SECONDS = 1
    PipelineRun.objects.filter(pk=queued.pk).update(queued_at=timezone.now() - timedelta(seconds=5))
    reap_runs()
    queued.refresh_from_db()
    assert queued.queued_at > timezone.now() - timedelta(seconds=5)


def test_resume_and_cancel_refuse_runs_in_the_wrong_state(queued):
    succeeded = execute(queued)
    failed = execute(
        start_run(graph="gamed", input={**PLANT, "faults": {"scene_generator": "fail_always"}})
    )

    with pytest.raises(Conflict, match="only an interrupted or cancelled run can be resumed"):
        resume_run(run=failed)
    with pytest.raises(Conflict, match="only a pending, running, waiting or interrupted run"):
        cancel_run(run=succeeded)
    assert not AuditRecord.objects.filter(action__in=[AuditAction.CANCEL, AuditAction.RESUME])


def test_rerun_from_scratch_creates_a_child_run_from_the_input(queued):
    run = execute(queued)
    again = rerun_run(run=run, reason="new model")
    again = execute(again)

    assert again.status == RunStatus.SUCCEEDED
    assert again.parent_run == run and again.resume_mode == "full_rerun"
    assert sum(ledger_counts([again.pk]).values()) == 8
    assert AuditRecord.objects.get(action=AuditAction.RERUN).result_run == again


def test_each_action_writes_one_audit_record(queued):
    run = execute(queued)
    assert AuditRecord.objects.filter(action=AuditAction.START, result_run=run).count() == 1


def test_migrate_creates_the_reaper_schedule(db):
    schedule = Schedule.objects.get(func="pipeline.tasks.reap_runs")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    assert schedule.repeats == -1


def test_a_run_taken_over_after_an_interruption_moves_its_error_to_the_audit_trail(queued):
    # Interrupted with an error (a database outage, say), then its task is delivered again.
    PipelineRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.INTERRUPTED,
        error_message="OperationalError: server closed the connection unexpectedly",
        error_traceback="Traceback (most recent call last): ...",
    )

    run = execute(queued)

    assert run.status == RunStatus.SUCCEEDED
    assert (run.error_message, run.error_traceback) == ("", "")
    resume = AuditRecord.objects.get(run=run, action=AuditAction.RESUME)
    assert resume.details["previous_error"].startswith("OperationalError: server closed")
    assert resume.actor_label.startswith("worker ")


def test_a_redelivered_task_after_the_reaper_leaves_no_old_error_on_the_run(queued):
    run = execute(queued)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        worker="dead:1",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    run = execute(run)

    assert run.status == RunStatus.SUCCEEDED and run.error_message == ""
    previous = AuditRecord.objects.get(run=run, action=AuditAction.RESUME).details
    assert "stopped renewing its lease" in previous["previous_error"]
