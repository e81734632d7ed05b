"""Executes one run: streams its graph and records every stage and checkpoint as it happens."""

import contextlib
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

import psycopg
from django.conf import settings
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.db import connections, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from psycopg_pool import PoolTimeout

from pipeline import progress, services, shutdown, stagelogs
from pipeline.exceptions import LeaseLost, RunCancelled
from pipeline.graphs import compiled_graph, context_for
from pipeline.models import PipelineRun, ResumeMode, RunStatus, StageExecution, StageStatus
from pipeline.snapshots import capped, to_json

logger = logging.getLogger(__name__)


FROM_INPUT = (ResumeMode.FRESH, ResumeMode.FULL_RERUN)


def worker_id() -> str:
    return f"{settings.GAMED_WORKER_NAME or socket.gethostname()}:{os.getpid()}"


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


def lease_until(now):
    return now + timedelta(seconds=settings.GAMED_LEASE_SECONDS)


def claim(run_id: str, worker: str) -> PipelineRun | None:
    """Claim the run for `worker`; None if it is not claimable (or gone)."""
    now = timezone.now()
    runs = PipelineRun.objects.filter(pk=run_id).claimable()
    running = {
        "status": RunStatus.RUNNING,
        "worker": worker,
        "heartbeat_at": now,
        "lease_expires_at": lease_until(now),
        "started_at": Coalesce("started_at", Value(now, output_field=DateTimeField())),
        "finished_at": None,
        "attempts": F("attempts") + 1,
    }
    # Claim the run; another worker may have been handed the same task.
    if runs.filter(status=RunStatus.PENDING).update(**running):
        return PipelineRun.objects.get(pk=run_id)
    return services.take_over_run(runs, **running)


def renew_leases(run_ids: list, worker: str) -> int:
    now = timezone.now()
    return (
        PipelineRun.objects.filter(pk__in=run_ids)
        .held_by(worker)
        .update(heartbeat_at=now, lease_expires_at=lease_until(now))
    )


@dataclass
class RunEnd:
    """How a run ends; written with its last stage rows, only while `worker` holds it."""

    worker: str
    status: str
    fields: dict = field(default_factory=dict)

    def write(self, run_id) -> int:
        now = timezone.now()
        return (
            PipelineRun.objects.filter(pk=run_id)
            .held_by(self.worker)
            .update(
                status=self.status,
                finished_at=now,
                heartbeat_at=now,
                lease_expires_at=None,
                **self.fields,
            )
        )


def write_stage_rows(
    run_id, new: dict[int, dict], changed: dict[int, dict], end: RunEnd | None = None
) -> None:
    """Insert the run's `new` stage rows and change others (both `{stage_order: fields}`),
    and end the run, in one transaction: a reader never sees a finished run whose stages
    still say running."""
    with transaction.atomic():
        StageExecution.objects.bulk_create(
            StageExecution(run_id=run_id, stage_order=order, **fields)
            for order, fields in new.items()
        )
        for order, fields in changed.items():
            StageExecution.objects.filter(run_id=run_id, stage_order=order).update(**fields)
        if end is not None:
            end.write(run_id)


@dataclass
class RunControl:
    """What the writer thread tells a running run: stop (cancelled) or let go (lost)."""

    run_id: object
    worker: str
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Called at stage boundaries and by `progress.tick()` inside long stages."""
        if shutdown.stopping():
            raise shutdown.WorkerStopping("the worker's host is shutting down")
        if self.lost.is_set():
            raise LeaseLost(f"run {self.run_id} is no longer held by {self.worker}")
        if self.cancel.is_set():
            raise RunCancelled(f"run {self.run_id} was cancelled")


@dataclass
class _Op:
    run_id: object
    order: int = 0
    fields: dict | None = None
    new: bool = False
    end: RunEnd | None = None
    done: threading.Event | None = None


class RowWriter:
    """One thread per process that writes stage rows and watches the runs being executed.

    Writing off the graph's thread lets database round trips overlap the graph's own work:
    rows of stages that started and finished while the previous batch was written go in
    complete, in one INSERT. A write that failed is kept for its run and re-raised by the
    runner at its next event. The same thread renews the leases of this process's runs (also
    while a stage blocks for minutes) and polls for cancellation, so neither costs a stage.
    """

    _instances: ClassVar[dict[int, "RowWriter"]] = {}
    _lock = threading.Lock()

    @classmethod
    def for_process(cls) -> "RowWriter":
        # django-q2 forks its workers: a thread (and its connection) never crosses a fork.
        pid = os.getpid()
        with cls._lock:
            if pid not in cls._instances:
                cls._instances[pid] = cls()
            return cls._instances[pid]

    def __init__(self):
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._flush_now = threading.Event()
        self.errors: dict[object, BaseException] = {}
        self.controls: dict[object, RunControl] = {}
        self._polled = self._beat = time.monotonic()
        threading.Thread(target=self._loop, name="gamed-row-writer", daemon=True).start()

    def watch(self, control: RunControl) -> None:
        # A write that failed in an earlier execution of this run is not this one's concern.
        self.errors.pop(control.run_id, None)
        self.controls[control.run_id] = control

    def unwatch(self, run_id) -> None:
        self.controls.pop(run_id, None)
        self.errors.pop(run_id, None)

    def insert(self, run_id, order: int, fields: dict) -> None:
        self.raise_error(run_id)
        self._queue.put(_Op(run_id, order, fields, new=True))

    def update(self, run_id, order: int, fields: dict, *, check: bool = True) -> None:
        if check:
            self.raise_error(run_id)
        self._queue.put(_Op(run_id, order, fields))

    def raise_error(self, run_id) -> None:
        if run_id in self.errors:
            raise self.errors[run_id]

    def flush(self, run_id, end: RunEnd | None = None) -> None:
        """Wait until every row queued for the run (and its end) is written; re-raise a write
        that failed."""
        done = threading.Event()
        self._queue.put(_Op(run_id, end=end, done=done))
        self._flush_now.set()
        done.wait()
        error = self.errors.pop(run_id, None)
        if error is not None:
            raise error

    def close_connection(self) -> None:
        """Close the writer's database connection (before a test database is dropped)."""
        self.flush(None)

    def _loop(self) -> None:
        poll = min(settings.GAMED_CANCEL_POLL_SECONDS, settings.GAMED_HEARTBEAT_SECONDS)
        while True:
            try:
                batch = [self._queue.get(timeout=poll)]
            except queue.Empty:
                batch = []
            if batch:
                # Let a few events gather: fast stages then cost one INSERT between them.
                self._flush_now.wait(settings.GAMED_STAGE_WRITE_DELAY)
                self._flush_now.clear()
                with contextlib.suppress(queue.Empty):
                    while True:
                        batch.append(self._queue.get_nowait())
            by_run: dict[object, list[_Op]] = {}
            for op in batch:
                by_run.setdefault(op.run_id, []).append(op)
            for run_id, ops in by_run.items():
                if run_id is None:
                    connections.close_all()
                else:
                    self._write(run_id, ops)
                for op in ops:
                    if op.done is not None:
                        op.done.set()
            self._supervise()

    def _write(self, run_id, ops: list[_Op]) -> None:
        new: dict[int, dict] = {}
        changed: dict[int, dict] = {}
        end = next((op.end for op in ops if op.end is not None), None)
        for op in ops:
            if op.fields is None:
                continue
            target = new if op.new or op.order in new else changed
            target.setdefault(op.order, {}).update(op.fields)
        try:
            # An earlier batch failed: the runner is told at its next event; only the run's
            # end (when it is queued) is still written.
            self.raise_error(run_id)
            self._with_reconnect(lambda: write_stage_rows(run_id, new, changed, end))
        except Exception as exc:
            self.errors.setdefault(run_id, exc)
            # A run that would end `succeeded` is not: the runner sees the error and ends it
            # failed or interrupted. Any other end is recorded even without its last rows.
            if end is not None and end.status != RunStatus.SUCCEEDED:
                try:
                    self._with_reconnect(lambda: end.write(run_id))
                except Exception:
                    logger.exception("run %s: could not record its end", run_id)

    def _with_reconnect(self, write) -> None:
        try:
            write()
        except (DjangoOperationalError, DjangoInterfaceError):
            # The kept connection may have died since the last batch (a database restart):
            # the transaction was rolled back, so write once more on a new connection.
            connections["default"].close()
            try:
                write()
            except Exception:
                connections["default"].close()
                raise

    def _supervise(self) -> None:
        now = time.monotonic()
        controls = dict(self.controls)
        if not controls:
            return
        try:
            if now - self._polled >= settings.GAMED_CANCEL_POLL_SECONDS:
                self._polled = now
                rows = PipelineRun.objects.filter(pk__in=controls).values_list(
                    "pk", "status", "worker", "cancel_requested"
                )
                for pk, status, worker, cancel_requested in rows:
                    control = controls[pk]
                    if status != RunStatus.RUNNING or worker != control.worker:
                        control.lost.set()
                    elif cancel_requested:
                        control.cancel.set()
            if now - self._beat >= settings.GAMED_HEARTBEAT_SECONDS:
                self._beat = now
                renew_leases(list(controls), worker_id())
        except Exception:
            logger.warning("could not renew leases or poll for cancellation", exc_info=True)
            connections["default"].close()


@dataclass
class StageRecorder:
    """Turns LangGraph's `tasks` and `checkpoints` stream events into StageExecution rows.

    A stage starts from the checkpoint whose `next` contains it; the checkpoint written after
    it is the next `checkpoints` event (durability="sync" writes it before the next step), so
    a successful stage is completed once that id is known. Rows are addressed by
    (run, stage_order), which the recorder assigns, so no write waits for another.
    """

    run: PipelineRun
    next_order: int = 1
    writer: RowWriter = field(default_factory=RowWriter.for_process)
    logs: stagelogs.StageLogCapture = field(default_factory=stagelogs.capture)
    started_from: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[int, float]] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    current_checkpoint: str = ""
    earlier_attempts: Counter = field(default_factory=Counter)
    awaiting_checkpoint: list[tuple[int, dict]] = field(default_factory=list)

    def on_checkpoint(self, data: dict) -> None:
        checkpoint_id = data["config"]["configurable"]["checkpoint_id"]
        self.values = data["values"]
        self.current_checkpoint = checkpoint_id
        self._complete_awaiting(checkpoint_id)
        for task in data.get("tasks", ()):
            self.started_from[task["id"]] = checkpoint_id

    def on_task_start(self, data: dict) -> None:
        self.writer.insert(
            self.run.pk,
            self.next_order,
            {
                "stage_name": data["name"],
                "status": StageStatus.RUNNING,
                "task_id": data["id"],
                "attempt": self.earlier_attempts[data["id"]] + 1,
                "started_at": timezone.now(),
                "parent_checkpoint_id": self.started_from.pop(data["id"], self.current_checkpoint),
                "input_snapshot": capped(data.get("input")),
            },
        )
        self.logs.start_stage(str(self.run.pk), data["id"])
        self.running[data["id"]] = (self.next_order, time.monotonic())
        self.next_order += 1

    def on_task_result(self, data: dict) -> None:
        if data["id"] not in self.running:
            return
        order, started = self.running.pop(data["id"])
        fields = {
            "finished_at": timezone.now(),
            "duration_ms": int((time.monotonic() - started) * 1000),
            **self._logs(data["id"]),
        }
        error = data.get("error")
        if error is None:
            fields.update(status=StageStatus.SUCCEEDED, output_snapshot=capped(data.get("result")))
            self.awaiting_checkpoint.append((order, fields))
            return
        self.writer.update(
            self.run.pk,
            order,
            {
                "status": stage_status_for(error),
                "error_message": describe_error(error),
                "error_traceback": "".join(traceback.format_exception(error)),
                **fields,
            },
        )

    def _logs(self, task_id: str) -> dict:
        """The stage's captured log records, as fields of its row (none: nothing to write)."""
        records = self.logs.collect(str(self.run.pk), task_id)
        return {"logs": records} if records else {}

    def _complete_awaiting(self, checkpoint_id: str = "", *, check: bool = True) -> None:
        for order, fields in self.awaiting_checkpoint:
            fields["checkpoint_id"] = checkpoint_id
            self.writer.update(self.run.pk, order, fields, check=check)
        self.awaiting_checkpoint.clear()

    def close(
        self,
        end: RunEnd | None,
        status: str = StageStatus.INTERRUPTED,
        message: str = "",
        tb: str = "",
    ) -> None:
        """Write everything still queued, stages still running ending with the run's reason,
        and the run's end. All is queued before a write that failed earlier is re-raised, so
        the end is never skipped."""
        self._complete_awaiting(check=False)
        now = timezone.now()
        for task_id, (order, started) in self.running.items():
            self.writer.update(
                self.run.pk,
                order,
                {
                    **self._logs(task_id),
                    "status": status,
                    "finished_at": now,
                    "duration_ms": int((time.monotonic() - started) * 1000),
                    "error_message": message,
                    "error_traceback": tb,
                },
                check=False,
            )
        self.running.clear()
        self.writer.flush(self.run.pk, end)


def execute_run(run_id: str) -> str:
    """Run `run_id` to its end. Returns the run's final status (or why nothing ran)."""
    worker = worker_id()
    if shutdown.stopping():
        # This worker's host is shutting down: the run is left to another worker.
        if waiting := PipelineRun.objects.filter(pk=run_id).claimable().first():
            services.enqueue_run(waiting)
        return "handed back (worker stopping)"
    run = claim(run_id, worker)
    # A redelivered task may find its run held by a worker that died: take it over (resume).
    if run is None and services.reap_runs(run_id=run_id, auto_resume=False):
        run = claim(run_id, worker)
    if run is None:
        status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.info("run %s not claimed by %s (status: %s)", run_id, worker, status)
        return f"not claimed ({status or 'missing'})"

    graph = compiled_graph(run.graph)
    config = run_config(run)
    recorder = StageRecorder(run=run)
    # A thread with a checkpoint continues from it (a retry's fork, a resume); only a thread
    # with none starts from the run's input. A run's first claim knows without asking.
    latest = None
    if run.attempts > 1 or run.resume_mode not in FROM_INPUT:
        latest = graph.checkpointer.get_tuple(config)
        rows = list(run.stages.values_list("stage_order", "task_id"))
        recorder.next_order = max((order for order, _ in rows), default=0) + 1
        recorder.earlier_attempts = Counter(task_id for _, task_id in rows if task_id)
    if latest is not None:
        recorder.current_checkpoint = latest.config["configurable"]["checkpoint_id"]
    control = RunControl(run.pk, worker)
    recorder.writer.watch(control)
    token = progress.install(control.check, str(run.pk))
    try:
        for event in graph.stream(
            run.input if latest is None else None,
            config,
            context=context_for(run.graph, run.context),
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
                if data["next"]:
                    # A stage boundary: the checkpoint is saved, the next stage not started.
                    control.check()
            elif "result" in data or "error" in data:
                recorder.on_task_result(data)
            else:
                recorder.on_task_start(data)
        recorder.close(RunEnd(worker, RunStatus.SUCCEEDED, {"output": to_json(recorder.values)}))
    except RunCancelled:
        message = "Cancelled by an operator."
        end = RunEnd(worker, RunStatus.CANCELLED, {"error_message": message})
        _close_quietly(recorder, end, StageStatus.CANCELLED, message)
        return RunStatus.CANCELLED
    except LeaseLost:
        # The reaper or another worker owns the run now; record what finished, touch nothing.
        _close_quietly(recorder, None)
        logger.warning("run %s: lease lost by %s, stopped", run_id, worker)
        return "lease lost"
    except Exception as exc:
        message = describe_error(exc)
        tb = traceback.format_exc()
        # A database or checkpointer outage is not the pipeline's fault: resumable.
        status = RunStatus.INTERRUPTED if is_outage(exc) else RunStatus.FAILED
        end = RunEnd(worker, status, {"error_message": message, "error_traceback": tb})
        _close_quietly(recorder, end, stage_status_for(exc), message, tb)
        logger.warning("run %s %s: %s", run_id, status, message)
        return status
    except shutdown.WorkerStopping as exc:
        message = f"Interrupted: {exc}."
        end = RunEnd(worker, RunStatus.INTERRUPTED, {"error_message": message})
        _close_quietly(recorder, end, StageStatus.INTERRUPTED, message)
        _resume_elsewhere(run, worker)
        return RunStatus.INTERRUPTED
    except BaseException as exc:
        # The worker is being torn down (timeout, shutdown): never leave the run `running`.
        message = f"worker stopped: {describe_error(exc)}"
        end = RunEnd(worker, RunStatus.INTERRUPTED, {"error_message": message})
        _close_quietly(recorder, end, StageStatus.INTERRUPTED, message)
        raise
    finally:
        progress.uninstall(token)
        recorder.writer.unwatch(run.pk)
    return RunStatus.SUCCEEDED


OUTAGE_ERRORS = (
    DjangoOperationalError,
    DjangoInterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    sqlite3.OperationalError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE_ERRORS)


def stage_status_for(exc: BaseException) -> str:
    if isinstance(exc, RunCancelled):
        return StageStatus.CANCELLED
    if isinstance(exc, LeaseLost) or is_outage(exc):
        return StageStatus.INTERRUPTED
    return StageStatus.FAILED


def _resume_elsewhere(run: PipelineRun, worker: str) -> None:
    actor = services.Actor(label=f"worker {worker}")
    try:
        services.resume_run(run=run, actor=actor, reason="its worker's host shut down")
    except Exception:
        # Its end was not recorded (the database is gone): the reaper resumes it later.
        logger.warning("run %s: not queued to resume at shutdown", run.pk, exc_info=True)


def _close_quietly(recorder: StageRecorder, end: RunEnd | None, *args) -> None:
    try:
        recorder.close(end, *args)
    except Exception:
        # The database is gone: the lease expires and the reaper interrupts the run for resume.
        logger.exception("run %s: could not record its last stages or its end", recorder.run.pk)
