"""A run's progress as Server-Sent Events, derived by polling its rows.

Every event is derived from `PipelineRun` and `StageExecution` rows, and its id says where it
stands in one fixed order:

    0.0   run.started      the run was claimed by a worker
    k.0   stage.started    stage execution k began (stage.reused: copied into a retry)
    k.1   stage.finished   stage k ended: stage.finished, stage.failed, stage.cancelled,
                           stage.interrupted; or stage.waiting (it asked a question with
                           interrupt(); answered, it runs again as a new k, and this event,
                           read afterwards, is stage.answered: an id is never sent twice)
    k.2   run.waiting      the run waits for an operator's answer (k is its last stage), with
                           its open questions; the stream goes on
    k.3   run.ended        the run ended (k is its last stage); the stream then closes

An event is sent only once every event before it in that order exists, so the id of the last
event a client received says exactly what it has seen: reconnecting with `Last-Event-ID`
resumes right after it, with nothing missed and nothing repeated. (Parallel stages that end out
of order are therefore reported in stage order.)

Served by the ASGI app, a stream is an async response: between looks at its run it holds no
thread and no database connection. One watcher per web process looks at every watched run in
one query each POLL_SECONDS and wakes only the streams whose run changed; a stream then reads
its run's new rows on a small pool of threads (at most half of GAMED_DB_POOL_SIZE), each
connection given back after each read. Under WSGI (`runserver`, tests) a stream polls on its
own request thread.
"""

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.models import Count, Q

from pipeline.models import PipelineRun, StageExecution, StageStatus

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
# A stream ends after an hour, and the client reconnects with Last-Event-ID (browsers'
# EventSource does so by itself): no stream outlives a deploy for long.
MAX_STREAM_SECONDS = 3600.0
RECONNECT_MS = 2000
# How often an open stream asks again whether its caller may still see the run; the streams
# of one caller share an answer for half that long: a revoked key ends them within 15 s.
ACCESS_CHECK_SECONDS = 10.0

STAGE_ENDED = {
    StageStatus.SUCCEEDED: "stage.finished",
    StageStatus.FAILED: "stage.failed",
    StageStatus.CANCELLED: "stage.cancelled",
    StageStatus.INTERRUPTED: "stage.interrupted",
    StageStatus.WAITING: "stage.waiting",
    StageStatus.ANSWERED: "stage.answered",
}
STAGE_FIELDS = (
    "id",
    "stage_name",
    "stage_order",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "checkpoint_id",
    "error_message",
    "reused_from_id",
)
RUN_FIELDS = ("status", "started_at", "finished_at", "error_message")
# What a "started" event tells: the rest is not known yet when it happens.
ENDED_FIELDS = ("finished_at", "duration_ms", "checkpoint_id", "error_message")


@dataclass(frozen=True, order=True)
class EventId:
    order: int
    n: int

    def __str__(self) -> str:
        return f"{self.order}.{self.n}"

    @classmethod
    def parse(cls, text: str | None) -> "EventId | None":
        order, dot, n = (text or "").strip().partition(".")
        if not (dot and order.isdigit() and n.isdigit()):
            return None
        return cls(int(order), int(n))


@dataclass(frozen=True)
class Event:
    id: EventId
    name: str
    data: dict

    def encode(self) -> str:
        data = json.dumps({"event": self.name, **self.data}, cls=DjangoJSONEncoder)
        return f"id: {self.id}\nevent: {self.name}\ndata: {data}\n\n"


def _run_data(run: PipelineRun) -> dict:
    return {"run_id": str(run.pk), **{f: getattr(run, f) for f in RUN_FIELDS}}


def _run_started(run: PipelineRun) -> dict:
    return {"run_id": str(run.pk), "status": "running", "started_at": run.started_at}


def _stage_data(run: PipelineRun, stage: StageExecution) -> dict:
    return {"run_id": str(run.pk), **{f: getattr(stage, f) for f in STAGE_FIELDS}}


def _stage_started(run: PipelineRun, stage: StageExecution) -> dict:
    data = _stage_data(run, stage)
    for name in ENDED_FIELDS:
        data.pop(name)
    return data | {"status": "running"}


def derive_events(
    run: PipelineRun, stages: list[StageExecution], floor: int = 0
) -> tuple[list[Event], bool]:
    """The events the rows show, in id order, up to the first one still to come; and whether
    the run has ended. `stages` are the run's rows from stage_order `floor` on, in order; the
    run must have been read before them (the runner writes its last stage rows before it
    marks the run ended, so an ended run's rows read afterwards are complete)."""
    ended = run.is_terminal
    events: list[Event] = []
    if run.started_at:
        events.append(Event(EventId(0, 0), "run.started", _run_started(run)))
    elif not ended:
        return events, False
    for stage in stages:
        order = stage.stage_order
        if stage.status == StageStatus.REUSED:
            events.append(Event(EventId(order, 0), "stage.reused", _stage_data(run, stage)))
            continue
        events.append(Event(EventId(order, 0), "stage.started", _stage_started(run, stage)))
        if stage.status in STAGE_ENDED:
            name = STAGE_ENDED[stage.status]
            events.append(Event(EventId(order, 1), name, _stage_data(run, stage)))
        elif not ended:
            return events, False
    last = stages[-1].stage_order if stages else floor
    if run.is_waiting:
        questions = [
            {"interrupt_id": q.interrupt_id, "stage_name": q.stage_name, "value": q.value}
            for q in run.questions.filter(answered_at__isnull=True)
        ]
        events.append(
            Event(EventId(last, 2), "run.waiting", _run_data(run) | {"questions": questions})
        )
    if ended:
        events.append(Event(EventId(last, 3), "run.ended", _run_data(run)))
    return events, ended


def read_rows(run_pk, floor: int) -> tuple[PipelineRun | None, list[StageExecution]]:
    """The run, then its stage rows from stage_order `floor` on (in that order: see
    `derive_events`)."""
    run = PipelineRun.objects.filter(pk=run_pk).first()
    if run is None:
        return None, []
    return run, list(run.stages.filter(stage_order__gte=floor).order_by("stage_order"))


class EventStream:
    """What one stream sends, whatever drives it: the opening, the events the rows show, a
    heartbeat while nothing happens, the end at the run's end, at its lifetime or once its
    caller may no longer see runs (`still_allowed`, asked every ACCESS_CHECK_SECONDS)."""

    def __init__(self, run_pk, last_event_id: str | None, still_allowed: Callable[[], bool] | None):
        self.run_pk = run_pk
        self.cursor = EventId.parse(last_event_id)
        self.still_allowed = still_allowed
        self.started = self.last_sent = self.last_checked = time.monotonic()
        self.done = False

    @staticmethod
    def opening() -> str:
        return f"retry: {RECONNECT_MS}\n\n"

    def poll(self) -> list[str]:
        """One look at the run (it reads the database): what to send now. `done` says whether
        the stream ends after it."""
        chunks = self.check_access()
        if not self.done:
            chunks += self.read()
        if not self.done:
            chunks += self.idle()
        return chunks

    def access_due(self) -> bool:
        return (
            self.still_allowed is not None
            and time.monotonic() - self.last_checked >= ACCESS_CHECK_SECONDS
        )

    def check_access(self) -> list[str]:
        """Whether the caller may still see runs, when it is time to ask (the database)."""
        if not self.access_due():
            return []
        self.last_checked = time.monotonic()
        if self.still_allowed():
            return []
        self.done = True
        return [": access revoked; reconnect to authenticate again\n\n"]

    def read(self) -> list[str]:
        """The events the run's rows show that were not sent yet (the database)."""
        floor = self.cursor.order if self.cursor else 0
        run, stages = read_rows(self.run_pk, floor)
        if run is None:
            self.done = True
            return []
        events, self.done = derive_events(run, stages, floor)
        chunks = []
        for event in events:
            if self.cursor is None or event.id > self.cursor:
                chunks.append(event.encode())
                self.cursor, self.last_sent = event.id, time.monotonic()
        return chunks

    def idle(self) -> list[str]:
        """A heartbeat while nothing happens, or the end of the stream's lifetime."""
        now = time.monotonic()
        if now - self.started >= MAX_STREAM_SECONDS:
            self.done = True
            return [": stream lifetime reached; reconnect with Last-Event-ID\n\n"]
        if now - self.last_sent >= HEARTBEAT_SECONDS:
            self.last_sent = now
            return [": heartbeat\n\n"]
        return []

    def seconds_until_due(self) -> float:
        """Until the next heartbeat, access check or the end of the stream's lifetime."""
        due = [self.last_sent + HEARTBEAT_SECONDS, self.started + MAX_STREAM_SECONDS]
        if self.still_allowed is not None:
            due.append(self.last_checked + ACCESS_CHECK_SECONDS)
        return max(0.0, min(due) - time.monotonic())


def stream_run_events(
    run_pk, last_event_id: str | None = None, still_allowed: Callable[[], bool] | None = None
) -> Iterator[str]:
    """SSE text for a run, for a WSGI server: polls on the request's own thread."""
    stream = EventStream(run_pk, last_event_id, still_allowed)
    yield stream.opening()
    while True:
        yield from stream.poll()
        if stream.done:
            return
        time.sleep(POLL_SECONDS)


# Async streams (ASGI) ---------------------------------------------------------------------

_db_threads: ThreadPoolExecutor | None = None


async def in_db_thread(func: Callable, *args):
    """Run `func` on one of the few threads streams read the database with; the thread's
    connection goes back (to the pool, on Postgres) as soon as it is done."""
    global _db_threads
    if _db_threads is None:
        # Streams take at most half the web process's connections: requests find the rest.
        size = max(1, settings.GAMED_DB_POOL_SIZE // 2)
        _db_threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gamed-events")

    def call():
        try:
            return func(*args)
        finally:
            connections.close_all()

    return await asyncio.get_running_loop().run_in_executor(_db_threads, call)


def run_marks(run_ids: list[str]) -> dict[str, tuple]:
    """For each run, what changes whenever a new event could be derived from its rows: its
    status and start, how many stage rows it has and how many of them ended."""
    rows = (
        PipelineRun.objects.filter(pk__in=run_ids)
        .annotate(
            stage_rows=Count("stages"),
            ended=Count("stages", filter=~Q(stages__status=StageStatus.RUNNING)),
        )
        .values_list("pk", "status", "started_at", "stage_rows", "ended")
    )
    return {str(pk): tuple(mark) for pk, *mark in rows}


class RunWatcher:
    """One per event loop: looks at every watched run in one query each POLL_SECONDS and wakes
    the streams whose run changed (a stream reads its own rows only then)."""

    _by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunWatcher]" = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self):
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.marks: dict[str, tuple | None] = {}
        self.task: asyncio.Task | None = None

    @classmethod
    def for_this_loop(cls) -> "RunWatcher":
        return cls._by_loop.setdefault(asyncio.get_running_loop(), cls())

    @contextlib.contextmanager
    def watch(self, run_pk):
        key = str(run_pk)
        changed = asyncio.Event()
        self.waiters.setdefault(key, set()).add(changed)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield changed
        finally:
            self.waiters[key].discard(changed)
            if not self.waiters[key]:
                del self.waiters[key]
                self.marks.pop(key, None)

    async def _poll(self) -> None:
        while self.waiters:
            await asyncio.sleep(POLL_SECONDS)
            run_ids = list(self.waiters)
            try:
                marks = await in_db_thread(run_marks, run_ids)
            except Exception:
                logger.warning("event streams: could not look at their runs", exc_info=True)
                continue
            for key in run_ids:
                if key in self.waiters and marks.get(key) != self.marks.get(key, ()):
                    for changed in self.waiters[key]:
                        changed.set()
                self.marks[key] = marks.get(key)


def release_request_thread() -> None:
    """Django runs a request's sync code on a thread kept for the whole request (asgiref's
    thread-sensitive context); once a stream's headers are sent it needs that thread no more.
    Its connection (authentication used one) goes back first."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    executor = SyncToAsync.context_to_thread_executor.pop(context, None) if context else None
    if executor is not None:
        executor.submit(connections.close_all)
        executor.shutdown(wait=False)


async def astream_run_events(
    run_pk, last_event_id: str | None = None, still_allowed: Callable[[], bool] | None = None
) -> AsyncIterator[str]:
    """SSE text for a run, for the ASGI server: waits on the watcher, not on a thread."""
    release_request_thread()
    stream = EventStream(run_pk, last_event_id, still_allowed)
    yield stream.opening()
    with RunWatcher.for_this_loop().watch(run_pk) as changed:
        woken = True
        while True:
            if woken:  # by its run (or at the start): read its rows
                changed.clear()
                chunks = await in_db_thread(stream.poll)
            else:  # by the clock: no query, unless the caller's access is due to be asked
                chunks = await in_db_thread(stream.check_access) if stream.access_due() else []
                if not stream.done:
                    chunks += stream.idle()
            for chunk in chunks:
                yield chunk
            if stream.done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), stream.seconds_until_due())
            woken = changed.is_set()
