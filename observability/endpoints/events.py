"""Live progress of a run as Server-Sent Events."""

from typing import Annotated
from uuid import UUID

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Header, Router

from observability import events
from observability.auth import access_check
from observability.errors import errors
from observability.events import STAGE_ENDED, astream_run_events, stream_run_events
from observability.schemas import RunEventOut
from pipeline.selectors import get_run

router = Router(tags=["runs"])

LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="Resume after this event (sent on reconnect)."),
]

EVENT_NAMES = [
    "run.started",
    "run.ended",
    "stage.started",
    "stage.reused",
    *STAGE_ENDED.values(),
]
EVENT_STREAM = {
    "description": "A text/event-stream of the run's events, ending with `run.ended`.",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "description": "One event; `data` is JSON.",
                "properties": {
                    "id": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
                    "event": {"type": "string", "enum": EVENT_NAMES},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": RunEventOut.model_json_schema(),
                    },
                    "retry": {"type": "integer"},
                },
            }
        }
    },
}


@router.get(
    "/runs/{uuid:run_id}/events",
    response={**errors(404, 422)},
    openapi_extra={"responses": {"200": EVENT_STREAM}},
)
def run_events(request: HttpRequest, run_id: UUID, last_event_id: LastEventId = None):
    """Server-Sent Events: `run.started`, `stage.started` / `stage.reused`,
    `stage.finished` / `stage.failed` / `stage.cancelled` / `stage.interrupted`, and a final
    `run.ended`, after which the stream closes. Each event's `id` orders it; reconnect with
    `Last-Event-ID` to continue where you left off. `: heartbeat` comments come every 15 s
    while nothing happens; a stream lasts at most an hour."""
    run = get_run(str(run_id))
    stream = astream_run_events if isinstance(request, ASGIRequest) else stream_run_events
    response = StreamingHttpResponse(
        stream(run.pk, last_event_id, access_check(request, events.ACCESS_CHECK_SECONDS / 2)),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
