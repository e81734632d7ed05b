"""Executes one run: streams its graph and records every stage and checkpoint as it happens."""

import asyncio
import concurrent.futures
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
from collections.abc import Callable
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

from pipeline import aio, progress, services, shutdown, stagelogs
from pipeline.callbacks import StageCallbacks, describe_error
from pipeline.exceptions import LeaseLost, RunCancelled
from pipeline.forking import ERROR_CHANNELS, checkpoint_config, graph_saver
from pipeline.graphs import (
    PATH_SEPARATOR,
    compiled_graph,
    context_for,
    has_subgraphs,
    is_async,
)
from pipeline.models import (
    ModelUsage,
    PipelineRun,
    Question,
    ResumeMode,
    RunStatus,
    StageExecution,
    StageStatus,
)
from pipeline.snapshots import capped

logger = logging.getLogger(__name__)


FROM_INPUT = (ResumeMode.FRESH, ResumeMode.FULL_RERUN)


def worker_id() -> str:
    return f"{settings.GAMED_WORKER_NAME or socket.gethostname()}:{os.getpid()}"


def run_config(run: PipelineRun, callbacks: StageCallbacks | None = None) -> dict:
    return {
        "configurable": {
            "thread_id": run.thread_id,
            "gamed_run_id": str(run.pk),
            "gamed_root_run_id": str(run.root_run_id or run.pk),
        },
        "recursion_limit": settings.GAMED_RECURSION_LIMIT,
        "callbacks": [callbacks] if callbacks else [],
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
    questions: list[Question] = field(default_factory=list)

    def write(self, run_id) -> int:
        now = timezone.now()
        ended = (
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
        if ended:
            # A question asked again after a resume is the same interrupt: keep the first.
            Question.objects.bulk_create(self.questions, ignore_conflicts=True)
        return ended


def write_stage_rows(
    run_id, new: dict[int, dict], changed: dict[int, dict], end: RunEnd | None = None
) -> None:
    """Insert the run's `new` stage rows and change others (both `{stage_order: fields}`),
    and end the run, in one transaction: a reader never sees a finished run whose stages
    still say running."""
    usage = {
        order: rows
        for order, fields in (*new.items(), *changed.items())
        if (rows := fields.get("model_usage"))
    }
    with transaction.atomic():
        StageExecution.objects.bulk_create(
            StageExecution(run_id=run_id, stage_order=order, **_row_fields(fields))
            for order, fields in new.items()
        )
        for order, fields in changed.items():
            StageExecution.objects.filter(run_id=run_id, stage_order=order).update(
                **_row_fields(fields)
            )
        if usage:
            stage_ids = dict(
                StageExecution.objects.filter(run_id=run_id, stage_order__in=usage).values_list(
                    "stage_order", "pk"
                )
            )
            ModelUsage.objects.bulk_create(
                ModelUsage(stage_id=stage_ids[order], **row)
                for order, rows in usage.items()
                for row in rows
            )
        if end is not None:
            end.write(run_id)


def _row_fields(fields: dict) -> dict:
    return {name: value for name, value in fields.items() if name != "model_usage"}


@dataclass
class RunControl:
    """What the writer thread tells a running run: stop (cancelled) or let go (lost)."""

    run_id: object
    worker: str
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    # Stops an async run's stage at once (cancels its task on the event loop).
    stop_now: Callable[[], object] | None = None

    def stop(self, reason: threading.Event) -> None:
        reason.set()
        if self.stop_now is not None:
            self.stop_now()

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
                        control.stop(control.lost)
                    elif cancel_requested:
                        control.stop(control.cancel)
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
    it is the next `checkpoints` event of its namespace (durability="sync" writes it before the
    next step), so a successful stage is completed once that id is known. Stages inside a
    subgraph arrive with the subgraph's namespace ("sub:<task id>") and are recorded under their
    path ("sub > inner"). Rows are addressed by (run, stage_order), which the recorder assigns,
    so no write waits for another.
    """

    run: PipelineRun
    next_order: int = 1
    writer: RowWriter = field(default_factory=RowWriter.for_process)
    logs: stagelogs.StageLogCapture = field(default_factory=stagelogs.capture)
    callbacks: StageCallbacks = field(default_factory=StageCallbacks)
    started_from: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[int, float]] = field(default_factory=dict)
    namespace_of: dict[str, str] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    current_checkpoint: dict[str, str] = field(default_factory=dict)
    # Rows each task has had, in earlier executions and this one (a replayed answer reruns it).
    attempts: Counter = field(default_factory=Counter)
    awaiting_checkpoint: dict[str, list[tuple[int, dict]]] = field(default_factory=dict)
    restored: set[str] = field(default_factory=set)
    # Interrupts raised in this execution: id -> the stage that asked (the innermost).
    asked: dict[str, tuple[str, int]] = field(default_factory=dict)
    waiting_rows: list[int] = field(default_factory=list)

    def on_event(self, event: dict, control: "RunControl") -> None:
        self.writer.raise_error(self.run.pk)
        namespace = "|".join(event["ns"])
        data = event["data"]
        if event["type"] == "checkpoints":
            self.on_checkpoint(namespace, data)
            if data["next"]:
                # A stage boundary: the checkpoint is saved, the next stage not started.
                control.check()
        elif "result" in data or "error" in data:
            self.on_task_result(namespace, data)
        else:
            self.on_task_start(namespace, data)

    def on_checkpoint(self, namespace: str, data: dict) -> None:
        checkpoint_id = data["config"]["configurable"]["checkpoint_id"]
        if not namespace:
            self.values = data["values"]
        self.current_checkpoint[namespace] = checkpoint_id
        self._complete_awaiting(namespace, checkpoint_id)
        for task in data.get("tasks", ()):
            self.started_from[task["id"]] = checkpoint_id
            if "result" in task:
                # A task that had finished before a resume or a retry's fork: LangGraph hands
                # its writes back and announces it, but does not run it again.
                self.restored.add(task["id"])

    def on_task_start(self, namespace: str, data: dict) -> None:
        task_id = data["id"]
        if task_id in self.restored:
            self.restored.discard(task_id)
            return
        self.attempts[task_id] += 1
        self.writer.insert(
            self.run.pk,
            self.next_order,
            {
                "stage_name": stage_path(namespace, data["name"]),
                "namespace": namespace,
                "status": StageStatus.RUNNING,
                "task_id": task_id,
                "attempt": self.attempts[task_id],
                "started_at": timezone.now(),
                "parent_checkpoint_id": self.started_from.pop(
                    task_id, self.current_checkpoint.get(namespace, "")
                ),
                "input_snapshot": capped(data.get("input")),
            },
        )
        self.logs.start_stage(str(self.run.pk), task_id)
        self.running[task_id] = (self.next_order, time.monotonic())
        self.namespace_of[task_id] = namespace
        self.next_order += 1

    def on_task_result(self, namespace: str, data: dict) -> None:
        if data["id"] not in self.running:
            return
        order, started = self.running.pop(data["id"])
        error = data.get("error")
        fields = {
            "finished_at": timezone.now(),
            "duration_ms": int((time.monotonic() - started) * 1000),
            **self._logs(data["id"]),
            **self.callbacks.tries(data["id"], failed=error is not None),
            **self.callbacks.model_usage(data["id"]),
        }
        if error is None and data.get("interrupts"):
            # It called interrupt(): no checkpoint follows; it runs again once answered.
            for interrupt in data["interrupts"]:
                self.asked.setdefault(interrupt["id"], (stage_path(namespace, data["name"]), order))
            self.waiting_rows.append(order)
            fields.update(status=StageStatus.WAITING, finished_at=None, duration_ms=None)
            self.writer.update(self.run.pk, order, fields)
            return
        if error is None:
            fields.update(status=StageStatus.SUCCEEDED, output_snapshot=capped(data.get("result")))
            self.awaiting_checkpoint.setdefault(namespace, []).append((order, fields))
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

    def answered(self) -> None:
        """The questions were answered without waiting (replayed): the asking stages ran."""
        now = timezone.now()
        for order in self.waiting_rows:
            self.writer.update(
                self.run.pk, order, {"status": StageStatus.ANSWERED, "finished_at": now}
            )
        self.waiting_rows.clear()
        self.asked.clear()

    def settle_cut_short(self, saver) -> None:
        """After a stage failed: a sibling still running when LangGraph stopped the step may
        have finished and saved its writes all the same (the stream just did not report it).
        Such a stage succeeded, and a retry reuses its work: record it so."""
        by_namespace: dict[str, list[str]] = {}
        for task_id in self.running:
            by_namespace.setdefault(self.namespace_of.get(task_id, ""), []).append(task_id)
        for namespace, task_ids in by_namespace.items():
            latest = saver.get_tuple(checkpoint_config(self.run.thread_id, namespace=namespace))
            saved: dict[str, dict] = {}
            for task_id, channel, value in (latest.pending_writes or []) if latest else ():
                if channel not in ERROR_CHANNELS:
                    saved.setdefault(task_id, {})
                    if not channel.startswith(("__", "branch:")):
                        saved[task_id][channel] = value
            for task_id in task_ids:
                if task_id in saved:
                    order, started = self.running.pop(task_id)
                    self.writer.update(
                        self.run.pk,
                        order,
                        {
                            **self._logs(task_id),
                            **self.callbacks.model_usage(task_id),
                            "status": StageStatus.SUCCEEDED,
                            "finished_at": timezone.now(),
                            "duration_ms": int((time.monotonic() - started) * 1000),
                            "output_snapshot": capped(saved[task_id]),
                        },
                        check=False,
                    )

    def _logs(self, task_id: str) -> dict:
        """The stage's captured log records, as fields of its row (none: nothing to write)."""
        records = self.logs.collect(str(self.run.pk), task_id)
        return {"logs": records} if records else {}

    def _complete_awaiting(
        self, namespace: str, checkpoint_id: str = "", *, check: bool = True
    ) -> None:
        for order, fields in self.awaiting_checkpoint.pop(namespace, ()):
            fields["checkpoint_id"] = checkpoint_id
            self.writer.update(self.run.pk, order, fields, check=check)

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
        for namespace in list(self.awaiting_checkpoint):
            self._complete_awaiting(namespace, check=False)
        now = timezone.now()
        for task_id, (order, started) in self.running.items():
            self.writer.update(
                self.run.pk,
                order,
                {
                    **self._logs(task_id),
                    **self.callbacks.model_usage(task_id),
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


def stage_path(namespace: str, name: str) -> str:
    """ "sub:<task id>|inner:<task id>" and "leaf" -> "sub > inner > leaf"."""
    if not namespace:
        return name
    outer = [segment.rpartition(":")[0] for segment in namespace.split("|")]
    return PATH_SEPARATOR.join([*outer, name])


def stream_graph(run: PipelineRun, recorder: StageRecorder, control: "RunControl", start) -> None:
    """Stream the run's graph to its end, recording as it goes. Graphs with async nodes run on
    the process's event loop with the async saver; a cancel stops their stage at once."""
    asynchronous = is_async(run.graph)
    graph = compiled_graph(run.graph, asynchronous=asynchronous)
    config = run_config(run, recorder.callbacks)
    options = {
        "context": context_for(run.graph, run.context),
        "stream_mode": ["checkpoints", "tasks"],
        "version": "v2",
        "durability": "sync",
        # Streaming subgraphs makes LangGraph run every task in its thread pool: only then.
        "subgraphs": has_subgraphs(run.graph),
    }
    if not asynchronous:
        for event in graph.stream(start, config, **options):
            recorder.on_event(event, control)
        return

    async def consume() -> None:
        progress.install(control.check, str(run.pk))
        async with contextlib.aclosing(graph.astream(start, config, **options)) as events:
            async for event in events:
                recorder.on_event(event, control)

    future = aio.submit(consume())
    control.stop_now = future.cancel
    try:
        future.result()
    except concurrent.futures.CancelledError:
        control.check()
        raise
    except BaseException:
        future.cancel()
        raise
    finally:
        control.stop_now = None


def open_questions(run: PipelineRun, recorder: StageRecorder) -> list[Question]:
    """The questions the run's thread waits on now, with the stages that asked them."""
    now = timezone.now()
    questions = []
    for interrupt in compiled_graph(run.graph).get_state(run_config(run)).interrupts:
        stage_name, order = recorder.asked.get(interrupt.id, ("", None))
        schema = interrupt.response_schema
        questions.append(
            Question(
                run=run,
                interrupt_id=interrupt.id,
                stage_name=stage_name,
                stage_order=order,
                value=capped(interrupt.value),
                response_schema=schema if isinstance(schema, dict) else None,
                asked_at=now,
            )
        )
    return questions


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

    recorder = StageRecorder(run=run)
    # A thread with a checkpoint continues from it (a retry's fork, a resume); only a thread
    # with none starts from the run's input. A run's first claim knows without asking.
    latest = None
    if run.attempts > 1 or run.resume_mode not in FROM_INPUT:
        latest = graph_saver(run.graph).get_tuple(run_config(run))
        rows = list(run.stages.values_list("stage_order", "task_id"))
        recorder.next_order = max((order for order, _ in rows), default=0) + 1
        recorder.attempts = Counter(task_id for _, task_id in rows if task_id)
    if latest is not None:
        recorder.current_checkpoint[""] = latest.config["configurable"]["checkpoint_id"]
    control = RunControl(run.pk, worker)
    recorder.writer.watch(control)
    token = progress.install(control.check, str(run.pk))
    try:
        start = run.input if latest is None else services.answers_to_resume(run)
        while True:
            stream_graph(run, recorder, control, start)
            if not recorder.asked:
                break
            questions = open_questions(run, recorder)
            # A retry asked to replay its lineage's answers continues without waiting.
            start = services.replay_answers(run, questions) if run.replay_answers else None
            if start is None:
                end = RunEnd(
                    worker,
                    RunStatus.WAITING,
                    {"waiting_since": timezone.now(), "worker": ""},
                    questions=questions,
                )
                recorder.close(end)
                return RunStatus.WAITING
            recorder.answered()
        output = capped(recorder.values, settings.GAMED_OUTPUT_MAX_BYTES)
        recorder.close(RunEnd(worker, RunStatus.SUCCEEDED, {"output": output}))
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
        if not is_outage(exc):
            with contextlib.suppress(Exception):
                recorder.settle_cut_short(graph_saver(run.graph))
        # Stages still running were cut short by LangGraph when this error ended the step.
        cut_short = StageStatus.INTERRUPTED if is_outage(exc) else StageStatus.CANCELLED
        _close_quietly(recorder, end, cut_short, f"Stopped: {message}")
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
    # LangGraph cancels a failed task's siblings: they stopped, they did not fail.
    if isinstance(exc, RunCancelled | asyncio.CancelledError | concurrent.futures.CancelledError):
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
