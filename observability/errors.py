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


def errors(*codes: int) -> dict[int, type[ErrorOut]]:
    """Response declarations for the OpenAPI schema: 401 and 403 always, plus `codes`."""
    return {code: ErrorOut for code in (401, 403, *codes)}
