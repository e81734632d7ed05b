"""Executes one run: streams its graph and records every stage and checkpoint as it happens."""

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import ClassVar

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from pipeline import progress
from pipeline.graphs import compiled_graph
from pipeline.models import PipelineRun, ResumeMode, RunStatus, StageExecution, StageStatus
from pipeline.snapshots import capped, to_json

logger = logging.getLogger(__name__)


FROM_INPUT = (ResumeMode.FRESH, ResumeMode.FULL_RERUN)


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


class RowWriter:
    """Writes stage rows from one background thread per process, in order, so that database
    round trips overlap the graph's own work instead of adding to every stage.

    Whatever queued up while the previous batch was written goes out as one batch: rows that
    started and finished meanwhile are inserted complete, in one statement. The thread keeps
    its own database connection across runs. A failed write (the database went away) is kept
    for its run and re-raised by the runner at its next event, so it cannot pass unnoticed.
    """

    _instances: ClassVar[dict[int, "RowWriter"]] = {}
    _lock = threading.Lock()

    @classmethod
    def for_process(cls) -> "RowWriter":
        pid = os.getpid()
        with cls._lock:
            if pid not in cls._instances:
                cls._instances[pid] = cls()
            return cls._instances[pid]

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._flush_now = threading.Event()
        self.errors: dict[object, BaseException] = {}
        self._thread = threading.Thread(target=self._loop, name="gamed-row-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Let a few events gather: fast stages then cost one INSERT between them.
            self._flush_now.wait(settings.GAMED_STAGE_WRITE_DELAY)
            self._flush_now.clear()
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            by_run: dict[object, list] = {}
            for op in batch:
                by_run.setdefault(op[0], []).append(op)
            for run_id, ops in by_run.items():
                self._write_run(run_id, ops)

    def _write_run(self, run_id, ops: list[tuple]) -> None:
        if run_id is None:  # close_connection()
            connections.close_all()
            ops[-1][3].set()
            return
        done = [op[3] for op in ops if op[1] == "flush"]
        if run_id not in self.errors:
            try:
                self._write(run_id, [op for op in ops if op[1] != "flush"])
            except Exception as exc:
                self.errors[run_id] = exc
                # The connection may be broken: the next batch opens a new one.
                connections["default"].close()
        for event in done:
            event.set()

    def _write(self, run_id, ops: list[tuple]) -> None:
        new: dict[int, dict] = {}
        changed: dict[int, dict] = {}
        heartbeat = False
        for _, kind, order, fields in ops:
            if kind == "heartbeat":
                heartbeat = True
            elif kind == "insert":
                new[order] = fields
            elif order in new:
                new[order].update(fields)
            else:
                changed.setdefault(order, {}).update(fields)
        statements = bool(new) + len(changed) + heartbeat
        with transaction.atomic() if statements > 1 else contextlib.nullcontext():
            if new:
                StageExecution.objects.bulk_create(
                    StageExecution(run_id=run_id, stage_order=order, **fields)
                    for order, fields in new.items()
                )
            for order, fields in changed.items():
                StageExecution.objects.filter(run_id=run_id, stage_order=order).update(**fields)
            if heartbeat:
                PipelineRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())

    def put(self, run_id, kind: str, order: int = 0, fields: dict | None = None) -> None:
        self.raise_error(run_id)
        self._queue.put((run_id, kind, order, fields or {}))

    def raise_error(self, run_id) -> None:
        if run_id in self.errors:
            raise self.errors[run_id]

    def _barrier(self, run_id) -> None:
        event = threading.Event()
        self._queue.put((run_id, "flush", 0, event))
        self._flush_now.set()
        event.wait()

    def close_connection(self) -> None:
        """Close the writer's database connection (before a test database is dropped)."""
        self._barrier(None)

    def flush(self, run_id) -> None:
        """Wait until every write queued for the run is done; re-raise one that failed."""
        self._barrier(run_id)
        error = self.errors.pop(run_id, None)
        if error is not None:
            raise error


@dataclass
class StageRecorder:
    """Turns LangGraph's `tasks` and `checkpoints` stream events into StageExecution rows.

    A stage starts from the checkpoint whose `next` contains it; the checkpoint written after
    it is the next `checkpoints` event (durability="sync" writes it before the next step). A
    successful stage is completed in one UPDATE once that checkpoint id is known. Rows are
    addressed by (run, stage_order), which the runner assigns, so no write waits for another.
    """

    run: PipelineRun
    next_order: int
    writer: RowWriter = field(init=False)
    started_from: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[int, float]] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    current_checkpoint: str = ""
    awaiting_checkpoint: list[tuple[int, dict]] = field(default_factory=list)
    last_heartbeat: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.writer = RowWriter.for_process()

    def _insert(self, order: int, **fields) -> None:
        self.writer.put(self.run.pk, "insert", order, fields)

    def _update(self, order: int, **fields) -> None:
        self.writer.put(self.run.pk, "update", order, fields)

    def on_checkpoint(self, data: dict) -> None:
        checkpoint_id = data["config"]["configurable"]["checkpoint_id"]
        self.values = data["values"]
        self.current_checkpoint = checkpoint_id
        self.flush(checkpoint_id)
        for task in data.get("tasks", ()):
            self.started_from[task["id"]] = checkpoint_id

    def on_task_start(self, data: dict) -> None:
        self._insert(
            self.next_order,
            stage_name=data["name"],
            status=StageStatus.RUNNING,
            task_id=data["id"],
            started_at=timezone.now(),
            parent_checkpoint_id=self.started_from.pop(data["id"], self.current_checkpoint),
            input_snapshot=capped(data.get("input")),
        )
        self.running[data["id"]] = (self.next_order, time.monotonic())
        self.next_order += 1
        self.heartbeat()

    def on_task_result(self, data: dict) -> None:
        if data["id"] not in self.running:
            return
        order, started = self.running.pop(data["id"])
        fields = {
            "finished_at": timezone.now(),
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
        error = data.get("error")
        if error is None:
            fields.update(status=StageStatus.SUCCEEDED, output_snapshot=capped(data.get("result")))
            self.awaiting_checkpoint.append((order, fields))
            return
        self._update(
            order,
            status=StageStatus.FAILED,
            error_message=describe_error(error),
            error_traceback="".join(traceback.format_exception(error)),
            **fields,
        )

    def flush(self, checkpoint_id: str = "") -> None:
        for order, fields in self.awaiting_checkpoint:
            self._update(order, checkpoint_id=checkpoint_id, **fields)
        self.awaiting_checkpoint.clear()

    def close(self, status: str | None = None, message: str = "", tb: str = "") -> None:
        """Write everything still queued; stages still running end with the run's reason."""
        self.flush()
        now = timezone.now()
        for order, started in self.running.values():
            self._update(
                order,
                status=status or StageStatus.INTERRUPTED,
                finished_at=now,
                duration_ms=int((time.monotonic() - started) * 1000),
                error_message=message,
                error_traceback=tb,
            )
        self.running.clear()
        self.writer.flush(self.run.pk)

    def heartbeat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_heartbeat >= settings.GAMED_HEARTBEAT_SECONDS:
            self.writer.put(self.run.pk, "heartbeat")
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
    graph = compiled_graph(run.graph)
    config = run_config(run)
    # A thread with a checkpoint continues from it (a retry's fork, a resume); only a thread
    # with none starts from the run's input. A run's first claim knows without asking.
    first_claim = run.attempts == 1 and run.resume_mode in FROM_INPUT
    latest = None if first_claim else graph.checkpointer.get_tuple(config)
    fresh = latest is None
    last_order = None if first_claim else run.stages.aggregate(last=Max("stage_order"))["last"]
    recorder = StageRecorder(run=run, next_order=(last_order or 0) + 1)
    if latest is not None:
        recorder.current_checkpoint = latest.config["configurable"]["checkpoint_id"]
    token = progress.install(recorder.heartbeat)
    try:
        for event in graph.stream(
            run.input if fresh else None,
            config,
            stream_mode=["checkpoints", "tasks"],
            version="v2",
            durability="sync",
        ):
            recorder.writer.raise_error(run.pk)
            if event["ns"]:
                continue
            data = event["data"]
            if event["type"] == "checkpoints":
                recorder.on_checkpoint(data)
            elif "result" in data or "error" in data:
                recorder.on_task_result(data)
            else:
                recorder.on_task_start(data)
        recorder.close()
        output = to_json(recorder.values)
    except Exception as exc:
        message = describe_error(exc)
        tb = traceback.format_exc()
        _close_quietly(recorder, StageStatus.FAILED, message, tb)
        _finish(run, RunStatus.FAILED, error_message=message, error_traceback=tb)
        logger.warning("run %s failed: %s", run_id, message)
        return RunStatus.FAILED
    except BaseException as exc:
        # The worker is being torn down (timeout, shutdown): never leave the run `running`.
        message = f"worker stopped: {describe_error(exc)}"
        _close_quietly(recorder, StageStatus.INTERRUPTED, message)
        _finish(run, RunStatus.INTERRUPTED, error_message=message)
        raise
    finally:
        progress.uninstall(token)
    _finish(run, RunStatus.SUCCEEDED, output=output)
    return RunStatus.SUCCEEDED


def _close_quietly(recorder: StageRecorder, status: str, message: str, tb: str = "") -> None:
    try:
        recorder.close(status, message, tb)
    except Exception:
        logger.exception("run %s: could not record its last stages", recorder.run.pk)


def _finish(run: PipelineRun, status: str, **fields) -> None:
    PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )
