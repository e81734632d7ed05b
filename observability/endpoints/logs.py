"""Stage logs of a run: what each stage logged while it ran, filtered by stage and level."""

import logging
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.pagination import PageNumberPagination, paginate

from observability.errors import errors
from observability.schemas import Text
from pipeline.selectors import get_run, log_lines

router = Router(tags=["runs"])

LEVELS = {name: level for name, level in logging.getLevelNamesMapping().items() if level}
# Level names as logging spells them, or in lower case.
LevelName = Enum("LevelName", {name: name for name in [*LEVELS, *map(str.lower, LEVELS)]}, type=str)


class LogLineOut(Schema):
    stage_order: int = Field(description="The stage execution the record belongs to.")
    stage_name: str
    seq: int = Field(description="Position of the record within its stage execution.")
    level: int
    level_name: str
    logger: str
    message: str
    created_at: datetime | None
    extra: dict[str, Any]


class LogFilter(Schema):
    stage: Text | None = Field(None, description="Only this stage (all its executions).")
    stage_order: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Only this stage execution."
    )
    level: LevelName | None = Field(
        None, description="Lowest level to include: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )


@router.get("/runs/{uuid:run_id}/logs", response={200: list[LogLineOut], **errors(404, 422)})
@paginate(PageNumberPagination, page_size=200)
def run_logs(request: HttpRequest, run_id: UUID, filters: Query[LogFilter]):
    """Log records the run's stages emitted while they ran, in order. A stage keeps at most
    GAMED_STAGE_LOG_LIMIT records; its last record then says how many were dropped."""
    min_level = LEVELS[filters.level.value.upper()] if filters.level else 0
    run = get_run(str(run_id))
    return log_lines(
        run, stage_order=filters.stage_order, stage_name=filters.stage, min_level=min_level
    )
