"""A run's progress as Server-Sent Events, derived by polling its rows.

Every event is derived from `PipelineRun` and `StageExecution` rows, and its id says where it
stands in one fixed order:

    0.0   run.started      the run was claimed by a worker
    k.0   stage.started    stage execution k began (stage.reused: copied into a retry)
    k.1   stage.finished   stage k ended: stage.finished, stage.failed, stage.cancelled,
                           stage.interrupted; or stage.waiting (it asked a question with
                           interrupt()), later stage.answered
    k.2   run.waiting      the run waits for an operator's answer (k is its last stage), with
                           its open questions; the stream goes on
    k.3   run.ended        the run ended (k is its last stage); the stream then closes

An event is sent only once every event before it in that order exists, so the id of the last
event a client received says exactly what it has seen: reconnecting with `Last-Event-ID`
resumes right after it, with nothing missed and nothing repeated. (Parallel stages that end out
of order are therefore reported in stage order.)
"""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder

from pipeline.models import PipelineRun, StageExecution, StageStatus

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
# A stream holds a server thread and polls the database: it ends after an hour, and the
# client reconnects with Last-Event-ID (browsers' EventSource does so by itself).
MAX_STREAM_SECONDS = 3600.0
RECONNECT_MS = 2000
# How often an open stream asks again whether its caller may still see the run.
ACCESS_CHECK_SECONDS = 15.0

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


def stream_run_events(
    run: PipelineRun,
    last_event_id: str | None = None,
    still_allowed: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """SSE text for `run` from after `last_event_id` until the run ends (or the stream's
    lifetime runs out), with `: heartbeat` comments while nothing happens. With
    `still_allowed`, the stream ends once that says no (asked every ACCESS_CHECK_SECONDS): a
    revoked key or a removed permission stops a stream already open."""
    cursor = EventId.parse(last_event_id)
    started = last_sent = last_checked = time.monotonic()
    yield f"retry: {RECONNECT_MS}\n\n"
    while True:
        if still_allowed is not None and time.monotonic() - last_checked >= ACCESS_CHECK_SECONDS:
            last_checked = time.monotonic()
            if not still_allowed():
                yield ": access revoked; reconnect to authenticate again\n\n"
                return
        run = PipelineRun.objects.filter(pk=run.pk).first()
        if run is None:
            return
        floor = cursor.order if cursor else 0
        stages = list(run.stages.filter(stage_order__gte=floor).order_by("stage_order"))
        events, ended = derive_events(run, stages, floor)
        for event in events:
            if cursor is None or event.id > cursor:
                yield event.encode()
                cursor, last_sent = event.id, time.monotonic()
        if ended:
            return
        now = time.monotonic()
        if now - started >= MAX_STREAM_SECONDS:
            yield ": stream lifetime reached; reconnect with Last-Event-ID\n\n"
            return
        if now - last_sent >= HEARTBEAT_SECONDS:
            yield ": heartbeat\n\n"
            last_sent = now
        time.sleep(POLL_SECONDS)
