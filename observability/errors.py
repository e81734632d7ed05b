"""How the API reports errors: one shape, `{"detail": ..., "code": ...}`, for every status."""

from observability.schemas import ErrorOut
from pipeline.exceptions import (
    Conflict,
    GraphUnavailable,
    InvalidInput,
    PipelineError,
    RunNotFound,
    StageNotFound,
    UnknownGraph,
)

STATUS_FOR = [
    ((RunNotFound, StageNotFound), 404),
    ((Conflict, GraphUnavailable), 409),
    ((InvalidInput, UnknownGraph), 422),
]


def status_for(exc: PipelineError) -> int:
    return next((code for kinds, code in STATUS_FOR if isinstance(exc, kinds)), 400)


def errors(*codes: int, body: bool = False) -> dict[int, type[ErrorOut]]:
    """Response declarations for the OpenAPI schema: 401, 403 and 503 (the database busy or
    down) always, plus `codes`; with `body`, also how a write's body is refused (413 too
    large, 415 not JSON, 422 invalid)."""
    refusals = (413, 415, 422) if body else ()
    return {code: ErrorOut for code in sorted({401, 403, 503, *codes, *refusals})}
