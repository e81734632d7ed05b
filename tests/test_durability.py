"""Killed workers, cancels and resumes, with real qcluster processes and both brokers."""

import json
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from pipeline.models import NodeInvocation, PipelineRun, RunStatus, StageExecution, StageStatus
from pipeline.services import cancel_run, resume_run
from tests.conftest import DURABLE, manage, redis_url, wait_for_runs

pytestmark = pytest.mark.worker

PLANT = "Label the parts of a plant cell"
STAGES = 8


@pytest.fixture(params=["orm", "redis"])
def broker(request):
    """Environment for workers and commands: ORM broker, or Redis with a fresh cluster name."""
    env = {**DURABLE, "GAMED_CLUSTER_NAME": f"test-{uuid.uuid4().hex[:8]}"}
    if request.param == "redis":
        env["REDIS_URL"] = redis_url()
    return env


def start_runs(env: dict, n: int, graph: str, data: dict) -> list[str]:
    """Start runs from a separate process, so they go to that broker's queue."""
    code = (
        "import json; from pipeline.services import start_run; "
        f"print(json.dumps([str(start_run(graph={graph!r}, input={data!r}).pk) "
        f"for _ in range({n})]))"
    )
    result = manage("shell", "-c", code, env=child(env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(env: dict) -> dict:
    from tests.conftest import child_env

    return child_env(**env)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def reap_until_done(env: dict, ids: list[str], timeout: float = 180) -> list[PipelineRun]:
    """What the reaper schedule does every minute, done every second here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list(PipelineRun.objects.filter(pk__in=ids))
        if all(run.status == RunStatus.SUCCEEDED for run in runs):
            return runs
        assert not [r for r in runs if r.status == RunStatus.FAILED], [
            r.error_message for r in runs
        ]
        result = manage("reap_runs", env=child(env))
        assert result.returncode == 0, result.stderr
        time.sleep(1)
    states = Counter(PipelineRun.objects.filter(pk__in=ids).values_list("status", flat=True))
    raise AssertionError(f"runs did not all succeed: {states}")


def ledger(run_id) -> Counter:
    return Counter(
        NodeInvocation.objects.filter(run_id=run_id).values_list("stage_name", flat=True)
    )


def test_killed_worker_loses_no_run_and_repeats_only_the_interrupted_stage(workers, broker):
    first = workers.start(**broker)
    ids = start_runs(
        broker, 10, "gamed", {"question": PLANT, "faults": {"scene_generator": "sleep:3"}}
    )
    wait_until(
        lambda: (
            StageExecution.objects.filter(
                run_id__in=ids, stage_name="scene_generator", status=StageStatus.RUNNING
            ).count()
            >= 2
        ),
        60,
        "two runs inside their slow stage",
    )
    workers.kill(first)
    killed_mid_stage = set(
        NodeInvocation.objects.filter(run_id__in=ids, outcome="started").values_list(
            "run_id", flat=True
        )
    )
    assert killed_mid_stage

    workers.start(**broker)
    runs = reap_until_done(broker, ids)

    for run in runs:
        counts = ledger(run.pk)
        repeated = {stage for stage, n in counts.items() if n > 1}
        if run.pk in killed_mid_stage:
            assert repeated == {"scene_generator"} and counts["scene_generator"] == 2, counts
            rows = run.stages.filter(stage_name="scene_generator").order_by("stage_order")
            assert [(r.status, r.attempt) for r in rows] == [
                (StageStatus.INTERRUPTED, 1),
                (StageStatus.SUCCEEDED, 2),
            ]
        else:
            assert repeated == set(), counts
        assert sum(counts.values()) == STAGES + len(repeated)


def test_cancel_stops_a_running_run_before_its_next_stage_and_resume_finishes_it(workers):
    workers.start()
    (run_id,) = start_runs(
        DURABLE, 1, "gamed", {"question": PLANT, "faults": {"scene_generator": "sleep:4"}}
    )
    wait_until(
        lambda: StageExecution.objects.filter(
            run_id=run_id, stage_name="scene_generator", status=StageStatus.RUNNING
        ).exists(),
        60,
        "the slow stage",
    )
    run = cancel_run(run=PipelineRun.objects.get(pk=run_id), reason="wrong question")
    assert run.status == RunStatus.RUNNING and run.cancel_requested

    (run,) = wait_for_runs([run], timeout=20, statuses=(RunStatus.CANCELLED,), workers=workers)
    assert set(ledger(run.pk)) == {
        "input_enhancer",
        "domain_knowledge_retriever",
        "router",
        "game_planner",
        "scene_generator",
    }
    assert run.stages.get(stage_name="scene_generator").status == StageStatus.CANCELLED
    assert run.finished_at - run.started_at < timedelta(seconds=4)

    resumed = resume_run(run=run, reason="go on")
    assert resumed.status == RunStatus.PENDING
    (run,) = wait_for_runs([run], timeout=90, workers=workers)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    counts = ledger(run.pk)
    assert counts["scene_generator"] == 2
    assert all(n == 1 for stage, n in counts.items() if stage != "scene_generator")


def test_resume_of_interrupted_fanout_run_keeps_the_finished_branch(workers):
    first = workers.start()
    (run_id,) = start_runs(DURABLE, 1, "fanout", {"faults": {"right": "sleep:3"}})
    wait_until(
        lambda: (
            NodeInvocation.objects.filter(
                run_id=run_id, stage_name="left", outcome="succeeded"
            ).exists()
            and NodeInvocation.objects.filter(run_id=run_id, stage_name="right").exists()
        ),
        60,
        "left finished while right runs",
    )
    workers.kill(first)
    workers.start()

    (run,) = reap_until_done(DURABLE, [run_id], timeout=90)

    assert ledger(run.pk) == Counter({"split": 1, "left": 1, "right": 2, "join": 1})
    assert run.output["visited"].count("left") == 1


def test_two_workers_on_redis_and_postgres_share_the_work(workers):
    if connection.vendor != "postgresql":
        pytest.skip("runs on the Postgres pass of `make test`")
    env = {
        **DURABLE,
        "REDIS_URL": redis_url(),
        "GAMED_CLUSTER_NAME": f"test-{uuid.uuid4().hex[:8]}",
    }
    workers.start(GAMED_WORKER_NAME="w1", **env)
    workers.start(GAMED_WORKER_NAME="w2", **env)
    ids = start_runs(env, 50, "gamed", {"question": PLANT, "faults": {"router": "sleep:0.2"}})

    runs = wait_for_runs(PipelineRun.objects.filter(pk__in=ids), timeout=180, workers=workers)

    assert all(run.status == RunStatus.SUCCEEDED for run in runs)
    assert all(run.attempts == 1 for run in runs)
    for run in runs:
        assert set(ledger(run.pk).values()) == {1}
    assert {run.worker.split(":")[0] for run in runs} == {"w1", "w2"}


def test_a_busy_cluster_takes_at_most_one_run_ahead_per_worker(workers):
    """Runs a busy host has taken from the queue cannot go to an idle one: a qcluster takes
    GAMED_QUEUE_LIMIT (default: one per worker) ahead of its workers, plus the one its pusher
    holds, and leaves the rest in the queue (django-q2's default is workers squared)."""
    cluster = f"test-{uuid.uuid4().hex[:8]}"
    env = {**DURABLE, "GAMED_REQUEUE_AFTER_SECONDS": "600", "GAMED_CLUSTER_NAME": cluster}
    # Only the runs' tasks in this queue: no scheduled reaper or pruner lands in it meanwhile.
    Schedule.objects.all().delete()
    ids = start_runs(env, 10, "gamed", {"question": PLANT, "faults": {"router": "sleep:30"}})
    workers.start(GAMED_WORKERS="2", **env)
    wait_until(
        lambda: PipelineRun.objects.filter(pk__in=ids, status=RunStatus.RUNNING).count() == 2,
        60,
        "both workers inside a slow run",
    )
    time.sleep(1)  # the cluster's pusher takes what it may meanwhile

    taken = OrmQ.objects.filter(key=cluster, lock__gt=timezone.now()).count()
    waiting = OrmQ.objects.filter(key=cluster, lock__lte=timezone.now()).count()
    assert taken == 2 + 2 + 1, (taken, waiting)  # running, queued in the cluster, pusher's
    assert waiting == 10 - taken
