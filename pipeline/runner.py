"""Executes one run: streams its graph and records every stage and checkpoint as it happens."""

import contextlib
import functools
import json
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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.db import connections, router, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from pipeline import progress, stagelogs
from pipeline.exceptions import LeaseLost, RunCancelled
from pipeline.graphs import compiled_graph
from pipeline.models import (
    PipelineRun,
    ResumeMode,
    RunStatus,
    StageExecution,
    StageStatus,
)
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


@dataclass
class RunControl:
    """What the supervising thread tells a running run: stop (cancelled) or let go (lost)."""

    run_id: object
    worker: str
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Called at stage boundaries and by `progress.tick()` inside long stages."""
        if self.lost.is_set():
            raise LeaseLost(f"run {self.run_id} is no longer held by {self.worker}")
        if self.cancel.is_set():
            raise RunCancelled(f"run {self.run_id} was cancelled")


class RowWriter:
    """One background thread per process that writes stage rows and supervises runs.

    Stage rows are written in order, in batches, so database round trips overlap the graph's
    own work instead of adding to every stage: rows that started and finished while the
    previous batch was written are inserted complete, in one statement. A failed write (the
    database went away) is kept for its run and re-raised by the runner at its next event.

    The same thread renews the lease of every run this process executes (also while a stage
    blocks for minutes) and polls for cancellation, so neither costs the stages anything.

    A run's end is written in the same transaction as its last stage rows: a reader never sees
    a finished run whose stages still say `running`, and ending costs no extra round trip.
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
        self.controls: dict[object, RunControl] = {}
        self._polled = self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="gamed-row-writer", daemon=True)
        self._thread.start()

    def watch(self, control: RunControl) -> None:
        # A write that failed in an earlier execution of this run is not this one's concern.
        self.errors.pop(control.run_id, None)
        self.controls[control.run_id] = control

    def unwatch(self, run_id) -> None:
        self.controls.pop(run_id, None)
        self.errors.pop(run_id, None)

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
            by_run: dict[object, list] = {}
            for op in batch:
                by_run.setdefault(op[0], []).append(op)
            for run_id, ops in by_run.items():
                self._write_run(run_id, ops)
            self._supervise()

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

    def _write_run(self, run_id, ops: list[tuple]) -> None:
        if run_id is None:  # close_connection()
            connections.close_all()
            ops[-1][3].set()
            return
        done = [op[3] for op in ops if op[1] == "flush"]
        writes = [op for op in ops if op[1] != "flush"]
        if run_id in self.errors:
            # An earlier batch failed: the runner is told at its next event; only the run's
            # end (when it is queued) is still written.
            self._record_end_alone(run_id, writes)
        else:
            try:
                self._write_retrying(run_id, writes)
            except Exception as exc:
                self.errors[run_id] = exc
                # The connection may be broken: the next batch opens a new one.
                connections["default"].close()
                self._record_end_alone(run_id, writes)
        for event in done:
            event.set()

    def _write_retrying(self, run_id, writes: list[tuple]) -> None:
        try:
            self._write(run_id, writes)
        except (DjangoOperationalError, DjangoInterfaceError):
            # The kept connection may have died since the last batch (a database restart):
            # the batch's transaction was rolled back, so write it once more on a new one.
            connections["default"].close()
            self._write(run_id, writes)

    def _record_end_alone(self, run_id, writes: list[tuple]) -> None:
        """A failed, interrupted or cancelled run's end is recorded even when its last stage
        rows could not be (bad data in a row, say). A run that would end `succeeded` is not:
        the runner sees the error and ends it as failed or interrupted instead."""
        ends = [op for op in writes if op[1] == "end"]
        if not ends or ends[0][3]["fields"]["status"] == RunStatus.SUCCEEDED:
            return
        try:
            self._write_retrying(run_id, ends[:1])
        except Exception:
            logger.exception("run %s: could not record its end", run_id)
            connections["default"].close()

    def _write(self, run_id, ops: list[tuple]) -> None:
        new: dict[int, dict] = {}
        changed: dict[int, dict] = {}
        heartbeat = False
        end = None
        for _, kind, order, fields in ops:
            if kind == "heartbeat":
                heartbeat = True
            elif kind == "end":
                end = end or fields  # the first end queued is how the run ended
            elif kind == "insert":
                new[order] = fields
            elif order in new:
                new[order].update(fields)
            else:
                changed.setdefault(order, {}).update(fields)
        heartbeat = heartbeat and end is None  # the end clears the lease anyway
        conn = connections[router.db_for_write(StageExecution)]
        # On Postgres the last rows and the run's end are one statement (the INSERT in a WITH).
        combined = bool(new) and end is not None and conn.vendor == "postgresql"
        statements = bool(new) + len(changed) + heartbeat + (end is not None) - combined
        with transaction.atomic(using=conn.alias) if statements > 1 else contextlib.nullcontext():
            if new:
                insert_stages(run_id, new, end=end if combined else None)
            for order, fields in changed.items():
                StageExecution.objects.filter(run_id=run_id, stage_order=order).update(**fields)
            if heartbeat:
                renew_leases([run_id], worker_id())
            if end is not None and not combined:
                execute(conn, *_end_update(conn, run_id, end))

    def put(
        self, run_id, kind: str, order: int = 0, fields: dict | None = None, *, check=True
    ) -> None:
        """Queue a write; with `check`, first re-raise a write of the run that failed."""
        if check:
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
    logs: stagelogs.StageLogCapture = field(init=False)
    started_from: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[int, float]] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    current_checkpoint: str = ""
    earlier_attempts: dict[str, int] = field(default_factory=dict)
    awaiting_checkpoint: list[tuple[int, dict]] = field(default_factory=list)

    def __post_init__(self):
        self.writer = RowWriter.for_process()
        self.logs = stagelogs.capture()

    def _insert(self, order: int, **fields) -> None:
        self.writer.put(self.run.pk, "insert", order, fields)

    def _update(self, order: int, *, check: bool = True, **fields) -> None:
        self.writer.put(self.run.pk, "update", order, fields, check=check)

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
            attempt=self.earlier_attempts.get(data["id"], 0) + 1,
            started_at=timezone.now(),
            parent_checkpoint_id=self.started_from.pop(data["id"], self.current_checkpoint),
            input_snapshot=capped(data.get("input")),
        )
        self.logs.start_stage(str(self.run.pk), data["id"])
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
            **self._logs(data["id"]),
        }
        error = data.get("error")
        if error is None:
            fields.update(status=StageStatus.SUCCEEDED, output_snapshot=capped(data.get("result")))
            self.awaiting_checkpoint.append((order, fields))
            return
        self._update(
            order,
            status=stage_status_for(error),
            error_message=describe_error(error),
            error_traceback="".join(traceback.format_exception(error)),
            **fields,
        )

    def _logs(self, task_id: str) -> dict:
        """The stage's captured log records, as fields of its row (none: nothing to write)."""
        records = self.logs.collect(str(self.run.pk), task_id)
        return {"logs": records} if records else {}

    def flush(self, checkpoint_id: str = "", *, check: bool = True) -> None:
        for order, fields in self.awaiting_checkpoint:
            self._update(order, check=check, checkpoint_id=checkpoint_id, **fields)
        self.awaiting_checkpoint.clear()

    def close(
        self,
        status: str = StageStatus.INTERRUPTED,
        message: str = "",
        tb: str = "",
        *,
        end: dict | None = None,
    ) -> None:
        """Write everything still queued; stages still running end with the run's reason.

        `end` ({"worker": ..., "fields": {...}}) ends the run in the same transaction. All is
        queued before a write that failed earlier is re-raised, so the end is never skipped."""
        self.flush(check=False)
        now = timezone.now()
        for task_id, (order, started) in self.running.items():
            self._update(
                order,
                check=False,
                **self._logs(task_id),
                status=status,
                finished_at=now,
                duration_ms=int((time.monotonic() - started) * 1000),
                error_message=message,
                error_traceback=tb,
            )
        self.running.clear()
        if end is not None:
            self.writer.put(self.run.pk, "end", 0, end, check=False)
        self.writer.flush(self.run.pk)

    def heartbeat(self) -> None:
        """Renew the lease at a stage boundary (written with the stage's row)."""
        self.writer.put(self.run.pk, "heartbeat")


def insert_stages(run_id, rows: dict[int, dict], *, end: dict | None = None) -> None:
    """INSERT one run's stage rows, `{stage_order: fields}`; on Postgres, also end the run
    (`end` as `_end()` builds it) in the same statement.

    On Postgres the rows travel as one JSON document that `jsonb_to_recordset` expands into
    the table: one short, parameter-light statement, where `bulk_create` would build a model
    instance per row and bind every value of every row separately, which costs more CPU than
    the graph steps being recorded (this runs for every stage of every run). A field a row
    does not set gets the field's default, as `bulk_create` would give it.
    """
    conn = connections[router.db_for_write(StageExecution)]
    if conn.vendor != "postgresql":
        if end is not None:
            raise ValueError("only Postgres inserts stage rows and ends the run in one statement")
        StageExecution.objects.using(conn.alias).bulk_create(
            StageExecution(run_id=run_id, stage_order=order, **fields)
            for order, fields in rows.items()
        )
        return
    sql, defaults = _stage_recordset_insert(conn.alias)
    document = [
        {**defaults, **fields, "run_id": run_id, "stage_order": order}
        for order, fields in rows.items()
    ]
    params = [Jsonb(document, dumps=_recordset_dumps)]
    if end is not None:
        end_sql, end_params = _end_update(conn, run_id, end)
        sql = f"WITH stages AS ({sql}) {end_sql}"
        params += end_params
    execute(conn, sql, params)


def execute(conn, sql: str, params: list, *, fetch: bool = False) -> list | None:
    """Run one of the statements every run sends (its claim, its stage rows and its end) on
    Django's connection `conn`; with `fetch`, return its rows (read to the end).

    On Postgres the values travel as parameters, through a psycopg cursor that binds
    server-side: Django's own cursors bind client-side, inlining every value as a literal in
    the statement's text, which costs the worker CPU to build and Postgres CPU to lex (the
    stage rows' JSON document is several kilobytes). Prepared statements stay as Django's
    connection configures them (off unless OPTIONS sets `prepare_threshold`). As
    `conn.cursor()` does, it checks the connection's health, thread and transaction, and
    raises Django's database errors; but Django's cursor wrapper is not in the way, so
    `connection.execute_wrapper()` hooks and query logging (`connection.queries`) do not see
    these statements.
    """
    if conn.vendor != "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else None
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    conn.validate_thread_sharing()
    conn.validate_no_broken_transaction()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else None


def _end_update(conn, run_id, end: dict) -> tuple[str, list]:
    """The UPDATE that ends the run as `end` says, if `end["worker"]` still holds it."""
    opts = PipelineRun._meta
    now = timezone.now()
    values = {**end["fields"], "finished_at": now, "heartbeat_at": now, "lease_expires_at": None}
    assignments, params = [], []
    for name, value in values.items():
        model_field = opts.get_field(name)
        assignments.append(f"{conn.ops.quote_name(model_field.column)} = %s")
        params.append(model_field.get_db_prep_save(value, conn))
    column = {
        name: conn.ops.quote_name(opts.get_field(name).column)
        for name in ("id", "status", "worker")
    }
    sql = (
        f"UPDATE {conn.ops.quote_name(opts.db_table)} SET {', '.join(assignments)} "
        f"WHERE {column['id']} = %s AND {column['status']} = %s AND {column['worker']} = %s"
    )
    params += [opts.pk.get_db_prep_value(run_id, conn), RunStatus.RUNNING, end["worker"]]
    return sql, params


@functools.cache
def _stage_recordset_insert(alias: str) -> tuple[str, dict]:
    """The INSERT ... SELECT FROM jsonb_to_recordset(%s) statement, and each field's default
    (keyed by attname, which is the record's key)."""
    conn = connections[alias]
    fields = [
        f for f in StageExecution._meta.concrete_fields if not f.primary_key and not f.generated
    ]
    quote = conn.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    record = ", ".join(f"{quote(f.attname)} {f.cast_db_type(conn)}" for f in fields)
    keys = ", ".join(quote(f.attname) for f in fields)
    table = quote(StageExecution._meta.db_table)
    source = f"jsonb_to_recordset(%s) AS r({record})"
    sql = f"INSERT INTO {table} ({columns}) SELECT {keys} FROM {source}"
    return sql, {f.attname: f.get_default() for f in fields}


def _recordset_default(value):
    if isinstance(value, datetime):
        return value.isoformat()  # full precision, with its offset
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _recordset_dumps(value) -> str:
    return json.dumps(value, default=_recordset_default)


def renew_leases(run_ids: list, worker: str) -> int:
    now = timezone.now()
    return PipelineRun.objects.filter(
        pk__in=run_ids, status=RunStatus.RUNNING, worker=worker
    ).update(
        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.GAMED_LEASE_SECONDS)
    )


def claim(run_id: str, worker: str) -> PipelineRun | None:
    """Claim the run for `worker` and return it as claimed, or None if it cannot be claimed.

    One conditional UPDATE ... RETURNING (Postgres, and SQLite since 3.35): another worker may
    have been handed the same task, and only one of them changes the row. Only a pending run,
    or an interrupted one (resume), can be claimed, and never one that was cancelled.
    """
    conn = connections[router.db_for_write(PipelineRun)]
    sql, names, converters = _claim_statement(conn.alias)
    opts = PipelineRun._meta
    now = timezone.now()

    def prep(name: str, value):
        model_field = opts.get_field(name)
        return model_field.get_db_prep_value(model_field.to_python(value), conn)

    params = [
        RunStatus.RUNNING,
        worker,
        prep("heartbeat_at", now),
        prep("lease_expires_at", now + timedelta(seconds=settings.GAMED_LEASE_SECONDS)),
        prep("started_at", now),
        prep("id", run_id),
        RunStatus.PENDING,
        RunStatus.INTERRUPTED,
        prep("cancel_requested", False),
    ]
    rows = execute(conn, sql, params, fetch=True)
    if not rows:
        return None
    values = []
    for value, (expression, functions) in zip(rows[0], converters, strict=True):
        for convert in functions:
            value = convert(value, expression, conn)
        values.append(value)
    return PipelineRun.from_db(conn.alias, names, values)


@functools.cache
def _claim_statement(alias: str) -> tuple[str, list[str], list[tuple]]:
    """The claim's SQL, returning every column of the run in model order, the fields' names,
    and each column's converters, as a queryset would apply them (what `Model.objects.raw()`
    works out again for every query, which costs more than the UPDATE itself)."""
    conn = connections[alias]
    opts = PipelineRun._meta
    quote = conn.ops.quote_name

    def col(name: str) -> str:
        return quote(opts.get_field(name).column)

    fields = opts.concrete_fields
    sql = (
        f"UPDATE {quote(opts.db_table)} SET {col('status')} = %s, "
        f"{col('worker')} = %s, {col('heartbeat_at')} = %s, {col('lease_expires_at')} = %s, "
        f"{col('started_at')} = COALESCE({col('started_at')}, %s), {col('finished_at')} = NULL, "
        f"{col('attempts')} = {col('attempts')} + 1 "
        f"WHERE {col('id')} = %s AND {col('status')} IN (%s, %s) "
        f"AND {col('cancel_requested')} = %s "
        f"RETURNING {', '.join(quote(f.column) for f in fields)}"
    )
    converters = []
    for model_field in fields:
        expression = model_field.get_col(opts.db_table)
        functions = conn.ops.get_db_converters(expression) + expression.get_db_converters(conn)
        converters.append((expression, functions))
    return sql, [f.attname for f in fields], converters


def execute_run(run_id: str) -> str:
    """Run `run_id` to its end. Returns the run's final status (or why nothing ran)."""
    worker = worker_id()
    run = claim(run_id, worker)
    if run is None:
        status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.info("run %s not claimed by %s (status: %s)", run_id, worker, status)
        return f"not claimed ({status or 'missing'})"

    graph = compiled_graph(run.graph)
    config = run_config(run)
    # A thread with a checkpoint continues from it (a retry's fork, a resume); only a thread
    # with none starts from the run's input. A run's first claim knows without asking.
    first_claim = run.attempts == 1 and run.resume_mode in FROM_INPUT
    latest = None if first_claim else graph.checkpointer.get_tuple(config)
    recorder = StageRecorder(run=run, next_order=1)
    if not first_claim:
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
        recorder.close(end=_end(worker, RunStatus.SUCCEEDED, output=to_json(recorder.values)))
    except RunCancelled:
        message = "Cancelled by an operator."
        end = _end(worker, RunStatus.CANCELLED, error_message=message)
        _close_quietly(recorder, StageStatus.CANCELLED, message, end=end)
        return RunStatus.CANCELLED
    except LeaseLost:
        # The reaper or another worker owns the run now; record what finished, touch nothing.
        _close_quietly(recorder)
        logger.warning("run %s: lease lost by %s, stopped", run_id, worker)
        return "lease lost"
    except Exception as exc:
        message = describe_error(exc)
        tb = traceback.format_exc()
        # A database or checkpointer outage is not the pipeline's fault: resumable.
        status = RunStatus.INTERRUPTED if is_outage(exc) else RunStatus.FAILED
        end = _end(worker, status, error_message=message, error_traceback=tb)
        _close_quietly(recorder, stage_status_for(exc), message, tb, end=end)
        logger.warning("run %s %s: %s", run_id, status, message)
        return status
    except BaseException as exc:
        # The worker is being torn down (timeout, shutdown): never leave the run `running`.
        message = f"worker stopped: {describe_error(exc)}"
        end = _end(worker, RunStatus.INTERRUPTED, error_message=message)
        _close_quietly(recorder, StageStatus.INTERRUPTED, message, end=end)
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


def _end(worker: str, status: str, **fields) -> dict:
    """How the run ends, written with its last stage rows (only while `worker` holds it)."""
    return {"worker": worker, "fields": {"status": status, **fields}}


def _close_quietly(recorder: StageRecorder, *args, **kwargs) -> None:
    try:
        recorder.close(*args, **kwargs)
    except Exception:
        # The database is gone: the lease expires and the reaper interrupts the run for resume.
        logger.exception("run %s: could not record its last stages or its end", recorder.run.pk)
