import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from django.db.models import Q
from django.utils import timezone
from ninja import Field, FilterSchema, Schema
from pydantic import AfterValidator, AliasChoices, BeforeValidator, ConfigDict, model_validator

from pipeline.lib import json_problem
from pipeline.models import PipelineRun, RunStatus
from pipeline.selectors import lineage_usage, run_totals, runs_failed_at, runs_in_lineage


def _to_utc(value: datetime) -> datetime:
    # Databases accept a narrower range of offsets and years than Python does.
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime out of range") from None


def _iso_only(value: Any) -> Any:
    # Pydantic would also read a number ("-272") as a Unix time; the schema says date-time.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time, not a number")
    return value


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_to_utc)]
# Postgres stores no NUL character in text: the schema says so, and such text is refused (422).
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class RejectsNul:
    """Input schemas refuse NUL characters, which Postgres cannot store in text or JSON, and
    JSON nested deeper than any graph needs."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if problem := json_problem(getattr(data, "_obj", data)):
            raise ValueError(problem)
        return data


class BodyIn(RejectsNul, Schema):
    """A request body: a JSON object of known fields only (a misspelt one is refused, not
    ignored)."""

    model_config = ConfigDict(extra="forbid")


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, for people.")
    code: str = Field(description="Stable machine-readable error code.")
    active_run_id: str | None = Field(None, description="The retry already in progress (409).")


# Stages ----------------------------------------------------------------------------------------


class ModelUsageOut(Schema):
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int = Field(description="Input tokens the provider read from its cache.")
    reasoning_tokens: int = Field(description="Output tokens the model spent reasoning.")
    cost_usd: float | None = Field(description="null: the model has no price.")


class StageOut(Schema):
    id: int
    stage_name: str = Field(description='Inside a subgraph, its path: "review > check".')
    stage_order: int
    status: str
    task_id: str = Field(description="LangGraph's task id.")
    namespace: str = Field(
        description="LangGraph checkpoint namespace of a stage inside a subgraph; empty at the "
        "top level."
    )
    depth: int = Field(description="0 at the top level, 1 inside a subgraph, ...")
    parent_task_id: str = Field(
        description="The task id of the subgraph stage it ran inside (empty at the top level)."
    )
    attempt: int = Field(1, description="2 or more: it ran again after an interruption.")
    tries: int = Field(1, description="How many times its RetryPolicy ran the node.")
    retry_errors: list[dict[str, Any]] = Field(
        [], description="The errors of the tries before the last: {error, at}."
    )
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    checkpoint_id: str
    parent_checkpoint_id: str
    reused_from_id: int | None
    error_message: str
    model_id: str = Field(description="The chat model it called (several: comma-separated).")
    model_calls: int = Field(0, description="Chat model calls it made, every try included.")
    prompt_tokens: int | None = Field(description="Input tokens of its model calls.")
    completion_tokens: int | None = Field(description="Output tokens of its model calls.")
    total_tokens: int | None
    cost_usd: float | None = Field(
        description="What its calls cost by GAMED_MODEL_PRICES; null: no model had a price."
    )
    model_usage: list[ModelUsageOut] = Field(
        [], description="Its calls to each model: tokens (cached, reasoning) and cost."
    )


class StageDetailOut(StageOut):
    run_id: UUID
    input_snapshot: Any = Field(description="The stage's input (a marked preview when large).")
    output_snapshot: Any = Field(description="What the stage returned (a preview when large).")
    error_traceback: str


# Runs ------------------------------------------------------------------------------------------


class RunOut(Schema):
    id: UUID
    graph: str
    status: str
    subject: str
    input: dict[str, Any]
    context: dict[str, Any]
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
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    admin_url: str
    recovered_by: UUID | None = Field(
        None,
        validation_alias=AliasChoices("recovered_by", "recovered_by_id"),
        description="A failed run is recovered once a run of its lineage created after it "
        "succeeded: the first such run. Bulk retries skip recovered runs.",
    )
    recovered_at: datetime | None = Field(None, description="When that run finished.")


class RunListItemOut(RunOut):
    stage_count: int = Field(description="Stage executions recorded so far.")
    stages_done: int = Field(description="Stages that succeeded or were reused.")
    failed_stage: str | None = Field(description="The last stage that failed, if any.")
    cost_usd: float | None = Field(
        description="What the stages it executed cost (GAMED_MODEL_PRICES); null: no priced "
        "model call."
    )


class LineageRunOut(Schema):
    id: UUID
    parent_run_id: UUID | None
    status: str
    retry_from_stage: str
    retry_depth: int
    resume_mode: str
    requested_via: str
    created_at: datetime
    finished_at: datetime | None


class TotalsOut(Schema):
    duration_ms: int | None = Field(description="Wall time from start to end (or to now).")
    stage_time_ms: int = Field(description="Time spent in stages this run executed.")
    executed_stages: int
    reused_stages: int
    model_calls: int = Field(description="Chat model calls of the stages this run executed.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None = Field(
        None, description="What the stages it executed cost; null: no priced model call."
    )


class LineageTotalsOut(Schema):
    runs: int = Field(description="Runs of the lineage that executed a stage.")
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None = Field(description="null: no priced model call in the lineage.")


class QuestionOut(Schema):
    interrupt_id: str
    stage_name: str = Field(description="The stage that asked (it runs again once answered).")
    text: str = Field(description="The question for people.")
    value: Any = Field(description="What the stage gave interrupt().")
    choices: list[Any] = Field(description="Answers the question offers, if any.")
    response_schema: dict[str, Any] | None = Field(description="JSON Schema of the answer.")
    asked_at: datetime
    answer: Any = None
    answered_at: datetime | None = None
    answered_via: str = ""
    answered_by: str = Field(
        "",
        validation_alias=AliasChoices("answered_by_name", "answered_by"),
        description="Who answered: a user, an API key, the system.",
    )


class RunDetailOut(RunOut):
    output: dict[str, Any] | None
    waiting_since: datetime | None = Field(description="When a waiting run started to wait.")
    questions: list[QuestionOut] = Field(
        description="Questions the run asked with interrupt(), answered or not, oldest first."
    )
    error_traceback: str
    attempts: int
    stages: list[StageOut]
    children: list[LineageRunOut] = Field(description="Retries and reruns of this run.")
    ancestor_ids: list[UUID] = Field(description="From the root run down to the parent.")
    lineage: list[LineageRunOut] = Field(
        description="The whole retry tree of the root run, depth first."
    )
    totals: TotalsOut
    lineage_totals: LineageTotalsOut = Field(
        description="Model calls, tokens and cost of every run in the retry tree (each "
        "stage counted in the run that executed it)."
    )


def run_detail_payload(run) -> dict:
    """What RunDetailOut shows of a run loaded by `selectors.get_run_detail`."""
    totals = run_totals(run, run.stage_list)
    lineage = [member for member, _ in run.lineage.runs]
    return {
        **RunOut.from_orm(run).model_dump(),
        "output": run.output,
        "waiting_since": run.waiting_since,
        "questions": run.question_list,
        "error_traceback": run.error_traceback,
        "attempts": run.attempts,
        "stages": run.stage_list,
        "children": [member for member in lineage if member.parent_run_id == run.pk],
        "ancestor_ids": run.ancestor_ids,
        "lineage": lineage,
        "totals": totals,
        "lineage_totals": lineage_usage(run),
    }


class RunCreateIn(BodyIn):
    graph: Text = Field(description="A registered graph (see GET /api/graphs).", max_length=100)
    input: dict[str, Any] = Field(description="Validated against the graph's input schema.")
    context: dict[str, Any] | None = Field(
        None,
        description="LangGraph runtime context, validated against the graph's context schema; "
        "given to every execution of the run (resumes, retries and reruns inherit it).",
    )
    reason: Text = Field("", max_length=2000)


class RunFilter(RejectsNul, FilterSchema):
    status: RunStatus | None = None
    graph: Text | None = None
    root: UUID | None = Field(None, description="Runs in the retry tree of this root run.")
    parent: UUID | None = Field(None, description="Direct retries and reruns of this run.")
    failed_stage: Text | None = Field(None, description="Runs in which this stage failed.")
    recovery: Literal["unrecovered", "recovered"] | None = Field(
        None,
        description="unrecovered: failed runs no later run of their lineage made good; "
        "recovered: failed runs one did (see `recovered_by`).",
    )
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None

    def filter_root(self, value: UUID | None) -> Q:
        return runs_in_lineage(str(value)) if value else Q()

    def filter_parent(self, value: UUID | None) -> Q:
        return Q(parent_run_id=value) if value else Q()

    def filter_failed_stage(self, value: str | None) -> Q:
        return runs_failed_at(value) if value else Q()

    def filter_recovery(self, value: str | None) -> Q:
        if value is None:
            return Q()
        failures = PipelineRun.objects.recovered_failures()
        if value == "unrecovered":
            failures = PipelineRun.objects.unrecovered_failures()
        return Q(pk__in=failures.values("pk"))

    def filter_created_after(self, value: datetime | None) -> Q:
        return Q(created_at__gte=value) if value else Q()

    def filter_created_before(self, value: datetime | None) -> Q:
        return Q(created_at__lt=value) if value else Q()


# Graphs and checkpoints ------------------------------------------------------------------------


class GraphEdgeOut(Schema):
    source: str
    target: str
    conditional: bool


class GraphOut(Schema):
    name: str
    error: str | None = Field(None, description="Why the graph cannot be built, if it cannot.")
    stages: list[str] = Field(
        [], description='Stages in declaration order; a subgraph\'s after its node ("sub > a").'
    )
    subject_field: str | None = Field(None, description="The input key a run is about.")
    input_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema of a run's input, as the console enforces it."
    )
    context_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema of the runtime context (None: the graph takes none)."
    )
    asynchronous: bool = Field(False, description="Has async nodes: runs on the async API.")
    nodes: list[str] = []
    edges: list[GraphEdgeOut] = []
    mermaid: str = Field("", description="The graph as a Mermaid flowchart.")


class CheckpointOut(Schema):
    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int | None
    source: str | None = Field(description="input, loop, update or fork (LangGraph's metadata).")
    next: list[str] = Field(description="Stages that run after this checkpoint.")
    created_at: datetime | None
    written_by_stage_id: int | None = Field(description="The stage execution that wrote it.")


class CheckpointTaskOut(Schema):
    id: str
    name: str
    error: str | None


class CheckpointStateOut(CheckpointOut):
    values: dict[str, Any] = Field(description="The graph state at this checkpoint.")
    tasks: list[CheckpointTaskOut]


# Actions ---------------------------------------------------------------------------------------


class RetryIn(BodyIn):
    from_stage: Text | None = Field(
        None, description="Stage name; its latest execution in the run is the target."
    )
    stage_execution_id: int | None = Field(
        None,
        ge=1,
        le=2**63 - 1,
        description="A specific stage execution (e.g. the second pass of a loop).",
    )
    state_patch: dict[str, Any] | None = Field(
        None, description="Values set on the state's channels before the stage runs."
    )
    context: dict[str, Any] | None = Field(
        None, description="A runtime context replacing the run's (default: the run's own)."
    )
    replay_answers: bool = Field(
        False,
        description="A stage that asks a question its lineage already answered gets that "
        "answer again instead of waiting.",
    )
    reason: Text = Field("", max_length=2000)
    dry_run: bool = Field(False, description="Only preview what the retry would do.")


class ReusedStageOut(Schema):
    stage: str
    stage_order: int
    reused_from: int


class RetryPlanOut(Schema):
    replay_answers: bool = False
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


class AnswerIn(BodyIn):
    value: Any = Field(description="The answer: any JSON value (a string, an object, ...).")
    interrupt_id: Text | None = Field(
        None, max_length=64, description="The question, when the run asks several."
    )
    reason: Text = Field("", max_length=2000)


class ActionIn(BodyIn):
    reason: Text = Field("", max_length=2000)


BULK_RETRY_MAX = 50


class BulkRetryIn(BodyIn):
    status: Literal["failed", "cancelled", "interrupted", "succeeded"] = "failed"
    graph: Text | None = None
    failed_stage: Text | None = Field(None, description="Only runs in which this stage failed.")
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    from_stage: Text | None = Field(
        None, description="Retry from this stage; by default from each run's failed stage."
    )
    limit: int = Field(
        BULK_RETRY_MAX, ge=1, le=BULK_RETRY_MAX, description="At most this many runs, newest first."
    )
    reason: Text = Field("", max_length=2000)


class BulkRetriedOut(Schema):
    run_id: UUID
    new_run_id: UUID
    from_stage: str


class BulkSkippedOut(Schema):
    run_id: UUID
    code: str
    detail: str


class BulkRetryOut(Schema):
    matched: int = Field(description="Runs the filter selected (at most `limit` are handled).")
    retried: list[BulkRetriedOut]
    skipped: list[BulkSkippedOut]
    remaining: int = Field(description="Matching runs left for another call.")
    next_created_before: str | None = Field(
        description="Pass as `created_before` to handle the remaining runs (ISO 8601, with "
        "microseconds)."
    )


# Health ----------------------------------------------------------------------------------------


class CheckOut(Schema):
    ok: bool
    detail: str


class HealthOut(Schema):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckOut]


# Events ----------------------------------------------------------------------------------------


class RunEventOut(Schema):
    """The `data` of one Server-Sent Event (JSON); stage events carry the stage's fields."""

    event: str = Field(description="Also the SSE `event` field.")
    run_id: UUID
    status: str = Field(description="The run's status (run events) or the stage's.")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_message: str = ""
    id: int | None = Field(None, description="Stage execution id (stage events).")
    stage_name: str | None = None
    stage_order: int | None = None
    duration_ms: int | None = None
    checkpoint_id: str | None = None
    reused_from_id: int | None = None
