from datetime import datetime
from typing import Any
from uuid import UUID

from ninja import Field, Schema


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, for people.")
    code: str = Field(description="Stable machine-readable error code.")
    active_run_id: str | None = Field(None, description="The retry already in progress (409).")


class StageOut(Schema):
    id: int
    stage_name: str
    stage_order: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    checkpoint_id: str
    parent_checkpoint_id: str
    reused_from_id: int | None
    error_message: str


class RunOut(Schema):
    id: UUID
    graph: str
    status: str
    subject: str
    input: dict[str, Any]
    error_message: str
    thread_id: str
    parent_run_id: UUID | None
    root_run_id: UUID | None
    retry_from_stage: str
    retry_depth: int
    resume_mode: str
    resume_note: str
    requested_via: str
    reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    admin_url: str


class RunDetailOut(RunOut):
    output: dict[str, Any] | None
    stages: list[StageOut]

    @staticmethod
    def resolve_stages(run) -> list:
        return list(run.stages.all())


class RetryIn(Schema):
    from_stage: str | None = Field(
        None, description="Stage name; its latest execution in the run is the target."
    )
    stage_execution_id: int | None = Field(
        None, description="A specific stage execution (e.g. the second pass of a loop)."
    )
    state_patch: dict[str, Any] | None = Field(
        None, description="Values set on the state's channels before the stage runs."
    )
    reason: str = Field("", max_length=2000)
    dry_run: bool = Field(False, description="Only preview what the retry would do.")


class ReusedStageOut(Schema):
    stage: str
    stage_order: int
    reused_from: int


class RetryPlanOut(Schema):
    run_id: UUID
    from_stage: str
    stage_execution_id: int | None
    resume_mode: str
    resume_from_stage: str | None
    checkpoint_id: str | None
    reused_stages: list[ReusedStageOut]
    will_run: list[str]
    retry_depth: int
    state_diff: dict[str, Any]
    notes: list[str]
