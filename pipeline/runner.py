"""Executes one run: streams its graph and records every stage and checkpoint as it happens."""

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import F, Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from pipeline import progress
from pipeline.graphs import compiled_graph
from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus
from pipeline.snapshots import capped, to_json

logger = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_config(run: PipelineRun) -> dict:
    return {
        "configurable": {
            "thread_id": run.thread_id,
            "gamed_run_id": str(run.pk),
            "gamed_root_run_id": str(run.root_run_id or run.pk),
        },
        "recursion_limit": settings.GAMED_RECURSION_LIMIT,
    }


@dataclass
class _Finished:
    row_id: int
    finished_at: datetime
    duration_ms: int
    output: object


@dataclass
class StageRecorder:
    """Turns LangGraph's `tasks` and `checkpoints` stream events into StageExecution rows.

    A stage starts from the checkpoint whose `next` contains it; the checkpoint written after
    it is the next `checkpoints` event (durability="sync" writes it before the next step). A
    successful stage is completed in one UPDATE once that checkpoint id is known.
    """

    run: PipelineRun
    next_order: int
    started_from: dict[str, str] = field(default_factory=dict)
    rows: dict[str, tuple[int, float]] = field(default_factory=dict)
    awaiting_checkpoint: list[_Finished] = field(default_factory=list)
    last_heartbeat: float = field(default_factory=time.monotonic)

    def on_checkpoint(self, data: dict) -> None:
        checkpoint_id = data["config"]["configurable"]["checkpoint_id"]
        self.flush(checkpoint_id)
        for task in data.get("tasks", ()):
            self.started_from[task["id"]] = checkpoint_id

    def on_task_start(self, data: dict) -> None:
        row = StageExecution.objects.create(
            run=self.run,
            stage_name=data["name"],
            stage_order=self.next_order,
            status=StageStatus.RUNNING,
            task_id=data["id"],
            started_at=timezone.now(),
            parent_checkpoint_id=self.started_from.pop(data["id"], ""),
            input_snapshot=capped(data.get("input")),
        )
        self.next_order += 1
        self.rows[data["id"]] = (row.pk, time.monotonic())
        self.heartbeat()

    def on_task_result(self, data: dict) -> None:
        row_id, started = self.rows.pop(data["id"], (None, time.monotonic()))
        if row_id is None:
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        error = data.get("error")
        if error is None:
            self.awaiting_checkpoint.append(
                _Finished(row_id, timezone.now(), duration_ms, data.get("result"))
            )
            return
        StageExecution.objects.filter(pk=row_id).update(
            status=StageStatus.FAILED,
            finished_at=timezone.now(),
            duration_ms=duration_ms,
            error_message=describe_error(error),
            error_traceback="".join(traceback.format_exception(error)),
        )

    def flush(self, checkpoint_id: str = "") -> None:
        for done in self.awaiting_checkpoint:
            StageExecution.objects.filter(pk=done.row_id).update(
                status=StageStatus.SUCCEEDED,
                finished_at=done.finished_at,
                duration_ms=done.duration_ms,
                output_snapshot=capped(done.output),
                checkpoint_id=checkpoint_id,
            )
        self.awaiting_checkpoint.clear()

    def close_open_stages(self, status: str, message: str, tb: str = "") -> None:
        """Stages still running when the run stops end with the run's reason."""
        self.flush()
        now = timezone.now()
        for row_id, started in self.rows.values():
            StageExecution.objects.filter(pk=row_id, status=StageStatus.RUNNING).update(
                status=status,
                finished_at=now,
                duration_ms=int((time.monotonic() - started) * 1000),
                error_message=message,
                error_traceback=tb,
            )
        self.rows.clear()

    def heartbeat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_heartbeat >= settings.GAMED_HEARTBEAT_SECONDS:
            PipelineRun.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())
            self.last_heartbeat = now


def claim(run_id: str, worker: str) -> bool:
    # Claim the run; another worker may have been handed the same task.
    now = timezone.now()
    claimed = PipelineRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING,
        worker=worker,
        heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now),
        attempts=F("attempts") + 1,
    )
    return claimed == 1


def execute_run(run_id: str) -> str:
    """Run `run_id` to its end. Returns the run's final status (or why nothing ran)."""
    worker = worker_id()
    if not claim(run_id, worker):
        status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.info("run %s not claimed by %s (status: %s)", run_id, worker, status)
        return f"not claimed ({status or 'missing'})"

    run = PipelineRun.objects.get(pk=run_id)
    last_order = run.stages.aggregate(last=Max("stage_order"))["last"]
    recorder = StageRecorder(run=run, next_order=(last_order or 0) + 1)
    graph = compiled_graph(run.graph)
    config = run_config(run)
    # A thread with a checkpoint continues from it (a retry's fork, a resume); only a thread
    # with none starts from the run's input.
    fresh = graph.checkpointer.get_tuple(config) is None
    token = progress.install(recorder.heartbeat)
    try:
        for event in graph.stream(
            run.input if fresh else None,
            config,
            stream_mode=["checkpoints", "tasks"],
            version="v2",
            durability="sync",
        ):
            if event["ns"]:
                continue
            data = event["data"]
            if event["type"] == "checkpoints":
                recorder.on_checkpoint(data)
            elif "result" in data or "error" in data:
                recorder.on_task_result(data)
            else:
                recorder.on_task_start(data)
        recorder.flush()
        output = to_json(graph.get_state(config).values)
    except Exception as exc:
        message = describe_error(exc)
        tb = traceback.format_exc()
        recorder.close_open_stages(StageStatus.FAILED, message, tb)
        _finish(run, RunStatus.FAILED, error_message=message, error_traceback=tb)
        logger.warning("run %s failed: %s", run_id, message)
        return RunStatus.FAILED
    except BaseException as exc:
        # The worker is being torn down (timeout, shutdown): never leave the run `running`.
        message = f"worker stopped: {describe_error(exc)}"
        recorder.close_open_stages(StageStatus.INTERRUPTED, message)
        _finish(run, RunStatus.INTERRUPTED, error_message=message)
        raise
    finally:
        progress.uninstall(token)
    _finish(run, RunStatus.SUCCEEDED, output=output)
    return RunStatus.SUCCEEDED


def _finish(run: PipelineRun, status: str, **fields) -> None:
    PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )
