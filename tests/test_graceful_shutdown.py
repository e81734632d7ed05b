"""SIGTERM to a worker host (its qcluster's process group, as systemd and Kubernetes send it,
or its main process): the cluster stops, a run in the middle of a stage ends interrupted at
once and another worker resumes it from its latest checkpoint. Real qcluster processes."""

import os
import signal
from collections import Counter

import pytest

from pipeline.models import (
    AuditAction,
    AuditRecord,
    NodeInvocation,
    PipelineRun,
    RunStatus,
    StageExecution,
    StageStatus,
)
from tests import test_durability
from tests.conftest import wait_for_runs
from tests.test_durability import reap_until_done, start_runs, wait_until

pytestmark = pytest.mark.worker
broker = test_durability.broker  # the ORM broker, then Redis

NAPPING = {"nap": 600}  # the stage would block for ten minutes


def in_the_middle_of_a_stage(run: PipelineRun, workers) -> None:
    try:
        wait_for_nap(run)
    except AssertionError as exc:
        raise AssertionError(workers.logs()) from exc


def wait_for_nap(run: PipelineRun) -> None:
    wait_until(
        lambda: StageExecution.objects.filter(
            run=run, stage_name="nap", status=StageStatus.RUNNING
        ).exists(),
        90,
        "the run inside its slow stage",
    )


def started(broker: dict, data: dict) -> PipelineRun:
    """A run queued on the broker the workers use."""
    (run_id,) = start_runs(broker, 1, "sleepy", data)
    return PipelineRun.objects.get(pk=run_id)


def ledger(run: PipelineRun) -> Counter:
    return Counter(NodeInvocation.objects.filter(run=run).values_list("stage_name", flat=True))


def group(pid: int, sig: int) -> None:
    os.killpg(pid, sig)


def main_process(pid: int, sig: int) -> None:
    os.kill(pid, sig)


@pytest.mark.parametrize("send", [group, main_process])
def test_sigterm_interrupts_the_run_at_once_and_another_worker_resumes_it(
    workers,
    broker,
    send,
):
    # A deadline no loaded machine reaches: this is about stopping in order.
    host = workers.start(GAMED_SHUTDOWN_SECONDS="120", **broker)
    run = started(broker, NAPPING)
    in_the_middle_of_a_stage(run, workers)

    send(host.pid, signal.SIGTERM)
    host.wait(timeout=100)  # only so that a hang fails the test

    assert host.returncode == 0, workers.logs()  # stopped in order, not at the deadline
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING  # interrupted, then queued to resume
    nap = run.stages.get(stage_name="nap")
    assert nap.status == StageStatus.INTERRUPTED
    assert "shutting down" in nap.error_message
    resume = AuditRecord.objects.get(run=run, action=AuditAction.RESUME)
    assert "shutting down" in resume.details["previous_error"]

    workers.start(**broker)
    (run,) = wait_for_runs([run], workers=workers)

    assert run.status == RunStatus.SUCCEEDED and run.error_message == ""
    assert ledger(run) == {"first": 1, "nap": 2, "last": 1}  # only the cut stage again
    naps = run.stages.filter(stage_name="nap").order_by("stage_order")
    assert [(s.status, s.attempt) for s in naps] == [
        (StageStatus.INTERRUPTED, 1),
        (StageStatus.SUCCEEDED, 2),
    ]


def test_a_stage_that_will_not_stop_does_not_keep_the_host_past_the_bound(
    workers,
    broker,
):
    host = workers.start(GAMED_SHUTDOWN_SECONDS="3", **broker)
    run = started(broker, {**NAPPING, "stubborn": True})
    in_the_middle_of_a_stage(run, workers)

    os.killpg(host.pid, signal.SIGTERM)
    host.wait(timeout=120)

    # The worker was cut off at its deadline, so the run could not record its end.
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    # Nothing is lost: its lease runs out, the reaper interrupts it, a worker resumes it.
    workers.start(**broker)
    (run,) = reap_until_done(broker, [str(run.pk)])
    assert ledger(run)["nap"] == 2 and ledger(run)["last"] == 1
