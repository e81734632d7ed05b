"""Every write to runs goes through here; admin, API and commands call these functions."""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from pipeline.exceptions import (
    AlreadyRecovered,
    AlreadyRetried,
    Conflict,
    InvalidInput,
    NoFailedStage,
    PipelineError,
    RetryNotAllowed,
    StageNotFound,
    UnknownGraph,
)
from pipeline.forking import (
    checkpoint_config,
    delete_thread,
    fork_checkpoint,
    reachable_stages,
    read_checkpoint,
)
from pipeline.graphs import (
    compiled_graph,
    graph_attribute,
    stage_names,
    stage_paths,
    state_graph,
    subject_of,
    top_stage,
    validate_context,
    validate_input,
)
from pipeline.lib import format_duration, json_problem
from pipeline.models import (
    CHECKPOINTS_KEPT_STATUSES,
    AuditAction,
    AuditRecord,
    PipelineRun,
    Question,
    ResumeMode,
    RunStatus,
    StageExecution,
    StageStatus,
    Surface,
    subgraph_execution,
)
from pipeline.retention import ThreadUsage, delete_threads, thread_usage
from pipeline.selectors import ancestor_ids, latest_failed_stage
from pipeline.snapshots import capped, to_json

if TYPE_CHECKING:
    from langgraph.checkpoint.base import CheckpointTuple
    from langgraph.types import Command

logger = logging.getLogger(__name__)


def enqueue_run(run: PipelineRun) -> None:
    """Queue a task for an existing run and record when (a resume, a requeue)."""
    PipelineRun.objects.filter(pk=run.pk).update(queued_at=timezone.now())
    queue_task(run)


def queue_task(run: PipelineRun) -> None:
    """Put the run's task on the queue. A new run is created with `queued_at` already set."""
    async_task(
        "pipeline.tasks.execute_run",
        str(run.pk),
        task_name=f"{run.graph} run {run.short_id}",
        group=run.graph,
    )


@dataclass(frozen=True)
class Actor:
    """Who asks for an operation, through which surface: kept on the runs it creates and in
    the audit trail. `label` names a caller without a user (an API key, a CLI user, cron)."""

    user: AbstractBaseUser | None = None
    via: Surface = Surface.SYSTEM
    label: str = ""

    def __post_init__(self):
        if self.user is not None and not self.user.is_authenticated:
            object.__setattr__(self, "user", None)

    @property
    def name(self) -> str:
        return self.label or (self.user.get_username() if self.user else "")


SYSTEM = Actor()
REAPER = Actor(label="reaper")
DEADLINE = Actor(label="deadline")
NO_DEFAULT = object()


def refuse_unstorable(**values) -> None:
    """A run's data must be storable on every database: no NUL, no absurd nesting."""
    for name, value in values.items():
        if problem := json_problem(value):
            raise InvalidInput(f"{name}: {problem}.")


def audit(
    action: AuditAction,
    actor: Actor,
    *,
    run: PipelineRun | None = None,
    result_run: PipelineRun | None = None,
    reason: str = "",
    **details,
) -> AuditRecord:
    """Record an operator action; called inside the action's own transaction."""
    refuse_unstorable(reason=reason)
    return AuditRecord.objects.create(
        action=action,
        via=actor.via,
        actor=actor.user,
        actor_label=actor.name,
        run=run,
        result_run=result_run,
        reason=reason,
        details=to_json(details),
    )


def start_run(
    *,
    graph: str,
    input: dict,
    context: dict | None = None,
    actor: Actor = SYSTEM,
    reason: str = "",
) -> PipelineRun:
    """Validate `input` (and the runtime `context`) against the graph's schemas, record a
    pending run, queue it."""
    refuse_unstorable(input=input, context=context)
    data = validate_input(graph, input)
    runtime_context = validate_context(graph, context)
    with transaction.atomic():
        run = PipelineRun.objects.create(
            graph=graph,
            input=data,
            context=runtime_context,
            subject=subject_of(graph, data),
            requested_by=actor.user,
            requested_via=actor.via,
            reason=reason,
            queued_at=timezone.now(),
        )
        audit(AuditAction.START, actor, run=run, result_run=run, reason=reason, graph=graph)
        transaction.on_commit(lambda: queue_task(run))
    return run


@dataclass
class ForkLevel:
    """A checkpoint a retry copies into its thread: the graph's, or a subgraph's (by its
    namespace) when the retry starts inside a subgraph."""

    row: StageExecution
    source: "CheckpointTuple"
    thread_id: str


@dataclass
class RetryPlan:
    """What a retry would do, computed without writing anything (the preview)."""

    run: PipelineRun
    requested: StageExecution | None
    resume_mode: ResumeMode
    target: StageExecution | None = None
    levels: list[ForkLevel] = field(default_factory=list)
    reused: list[StageExecution] = field(default_factory=list)
    will_run: list[str] = field(default_factory=list)
    input: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    state_patch: dict = field(default_factory=dict)
    state_diff: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    replay_answers: bool = False

    @property
    def source(self) -> "CheckpointTuple | None":
        """The graph's checkpoint the retry starts from (None: it starts from the input)."""
        return self.levels[0].source if self.levels else None

    @property
    def stage_name(self) -> str:
        if self.requested:
            return self.requested.stage_name
        return self.will_run[0] if self.will_run else ""

    @property
    def checkpoint_id(self) -> str:
        return self.levels[-1].source.config["configurable"]["checkpoint_id"] if self.levels else ""

    @property
    def depth(self) -> int:
        return self.run.retry_depth + 1

    def _reused_elsewhere(self) -> set[str]:
        target = self.target.stage_name if self.target else None
        return {row.stage_name for row in self.reused} - {target}

    @property
    def stages_to_run(self) -> list[str]:
        """`will_run` less the stages the retry reuses: those run again only if a loop (a
        validator sending work back) reaches them, and are listed by `may_run_again`."""
        reused = self._reused_elsewhere()
        return [name for name in self.will_run if name not in reused]

    @property
    def may_run_again(self) -> list[str]:
        reused = self._reused_elsewhere()
        return [name for name in self.will_run if name in reused]

    def to_dict(self) -> dict:
        return {
            "run_id": str(self.run.pk),
            "from_stage": self.stage_name,
            "stage_execution_id": self.requested.pk if self.requested else None,
            "resume_mode": self.resume_mode.value,
            "resume_from_stage": self.target.stage_name if self.target else None,
            "checkpoint_id": self.checkpoint_id or None,
            "reused_stages": [
                {"stage": s.stage_name, "stage_order": s.stage_order, "reused_from": s.original_id}
                for s in self.reused
            ],
            "will_run": self.will_run,
            "retry_depth": self.depth,
            "state_diff": self.state_diff,
            "replay_answers": self.replay_answers,
            "notes": self.notes,
        }


def _state_channels(graph: str) -> list[str]:
    return [c for c in state_graph(graph).channels if not c.startswith(("__", "branch:"))]


def _input_fields(graph: str) -> list[str]:
    schema = state_graph(graph).input_schema
    fields = getattr(schema, "model_fields", None) or getattr(schema, "__annotations__", {})
    return list(fields)


def _resolve_stage(
    run: PipelineRun, rows: list[StageExecution], from_stage: str | None, execution_id: int | None
) -> StageExecution:
    if (from_stage is None) == (execution_id is None):
        raise InvalidInput("Name the stage to retry from (from_stage) or one stage execution id.")
    if execution_id is not None:
        for row in rows:
            if row.pk == execution_id:
                return row
        raise StageNotFound(f"Stage execution {execution_id} is not part of run {run.pk}.")
    matching = [row for row in rows if row.stage_name == from_stage]
    if matching:
        return matching[-1]
    ran = ", ".join(dict.fromkeys(row.stage_name for row in rows)) or "none"
    if from_stage in stage_paths(run.graph):
        raise StageNotFound(
            f"Stage {from_stage!r} did not run in run {run.pk}; retry from a stage that ran: {ran}."
        )
    raise StageNotFound(
        f"Run {run.pk} has no stage {from_stage!r}. Stages of {run.graph!r}: "
        f"{', '.join(stage_paths(run.graph))}."
    )


def _source_thread(run: PipelineRun, row: StageExecution) -> str:
    # A reused row's checkpoints live on the thread of the run that really executed it.
    return row.reused_from.run.thread_id if row.reused_from_id else run.thread_id


def _ancestors(rows: list[StageExecution], row: StageExecution) -> list[StageExecution]:
    """The subgraph stages `row` ran inside, outermost first."""
    found = []
    for segment in row.namespace.split("|") if row.namespace else ():
        outer = subgraph_execution(rows, segment.rpartition(":")[2], row)
        if outer is not None:
            found.append(outer)
    return found


def _where_it_stopped(rows: list[StageExecution], row: StageExecution) -> StageExecution:
    """Inside a subgraph stage that did not finish, the inner stage where it stopped: a retry
    continues the subgraph from there instead of running its finished stages again."""
    while not row.is_done:
        inner = [
            r
            for r in rows
            if r.stage_order > row.stage_order
            and r.depth == row.depth + 1
            and r.parent_task_id == row.task_id
        ]
        unfinished = next((r for r in inner if not r.is_done), None)
        if unfinished is None:
            break
        row = unfinished
    return row


def _siblings(rows: list[StageExecution], row: StageExecution) -> list[StageExecution]:
    """Stages that started from the same checkpoint as `row` (parallel branches, `Send`)."""
    return [
        r
        for r in rows
        if r is not row
        and r.namespace == row.namespace
        and r.parent_checkpoint_id
        and r.parent_checkpoint_id == row.parent_checkpoint_id
    ]


def _fork_levels(
    run: PipelineRun, rows: list[StageExecution], target: StageExecution
) -> list[ForkLevel]:
    """The checkpoints before `target` and before each subgraph stage around it, or [] when
    one of them is missing or unreadable."""
    levels = []
    for row in [*_ancestors(rows, target), target]:
        thread_id = _source_thread(run, row)
        source = read_checkpoint(run.graph, thread_id, row.parent_checkpoint_id, row.namespace)
        if source is None:
            return []
        levels.append(ForkLevel(row, source, thread_id))
    return levels


def _reused(rows: list[StageExecution], target: StageExecution) -> list[StageExecution]:
    """Rows a retry from `target` copies: stages that finished before it, and siblings that
    finished beside it (their writes are carried over), but not the subgraph stages around it,
    which run again."""
    around = {row.pk for row in _ancestors(rows, target)}
    beside = {row.pk for row in _siblings(rows, target)}
    return [
        row
        for row in rows
        if row is not target
        and row.pk not in around
        and row.is_done
        and (row.stage_order < target.stage_order or row.pk in beside)
    ]


def _check_retryable(run: PipelineRun) -> None:
    if not run.can_retry:
        raise Conflict(
            f"Run {run.pk} is {run.status}; only a finished run can be retried. "
            "Wait for it to end or cancel it first."
        )
    if run.retry_depth + 1 > settings.GAMED_MAX_RETRY_DEPTH:
        raise RetryNotAllowed(
            f"Run {run.pk} is at retry depth {run.retry_depth}; GAMED_MAX_RETRY_DEPTH is "
            f"{settings.GAMED_MAX_RETRY_DEPTH}. Retry from an earlier run of the chain instead "
            f"(its root is {run.root_run_id or run.pk})."
        )


def plan_retry(
    *,
    run: PipelineRun,
    from_stage: str | None = None,
    stage_execution_id: int | None = None,
    state_patch: dict | None = None,
    context: dict | None = None,
) -> RetryPlan:
    """Decide how a retry of `run` from a stage would resume (with the run's runtime context,
    or `context` instead). Writes nothing."""
    refuse_unstorable(state_patch=state_patch, context=context)
    _check_retryable(run)
    try:
        current = set(stage_names(run.graph))
    except UnknownGraph:
        raise RetryNotAllowed(
            f"Graph {run.graph!r} is no longer registered; run {run.pk} cannot be retried."
        ) from None
    rows = list(run.stages.select_related("reused_from__run").order_by("stage_order"))
    requested = _resolve_stage(run, rows, from_stage, stage_execution_id)
    index = rows.index(requested)
    gone = [row.stage_name for row in rows[index:] if top_stage(row.stage_name) not in current]
    if gone:
        raise RetryNotAllowed(
            f"Graph {run.graph!r} changed since run {run.pk}: stage {gone[0]!r} no longer exists, "
            f"so the run cannot continue from {requested.stage_name!r}. Start a new run instead."
        )
    if state_patch is not None and not isinstance(state_patch, dict):
        raise InvalidInput("state_patch must be a JSON object of state keys to values.")
    patch = state_patch or {}
    channels = _state_channels(run.graph)
    unknown = sorted(set(patch) - set(channels))
    if unknown:
        raise InvalidInput(
            f"state_patch keys are not channels of the {run.graph!r} state: {', '.join(unknown)}. "
            f"Channels: {', '.join(channels)}."
        )

    plan = RetryPlan(run=run, requested=requested, resume_mode=ResumeMode.FULL_RERUN)
    target = _where_it_stopped(rows, requested)
    if target is not requested:
        plan.notes.append(
            f"{requested.stage_name} stopped at {target.stage_name}: the retry continues the "
            "subgraph from there."
        )
    # The target first, then earlier top-level stages should its checkpoints be gone.
    earlier = [row for row in reversed(rows[: rows.index(target)]) if not row.namespace]
    for row in [target, *earlier]:
        if row is rows[0] and not _siblings(rows, row):
            if row is requested:
                plan.notes.append(
                    f"{row.stage_name} is the first stage: a fresh run from the input."
                )
            break
        plan.levels = _fork_levels(run, rows, row)
        if plan.levels:
            plan.resume_mode = (
                ResumeMode.CHECKPOINT if row is target else ResumeMode.EARLIER_CHECKPOINT
            )
            plan.target = row
            break
        plan.notes.append(
            f"The checkpoint before {row.stage_name} (#{row.stage_order}) is missing or "
            "unreadable (pruned?)."
        )
    if plan.resume_mode == ResumeMode.EARLIER_CHECKPOINT:
        plan.notes.append(f"Resuming from the checkpoint before {plan.target.stage_name} instead.")
    elif plan.resume_mode == ResumeMode.FULL_RERUN and plan.notes and rows[0] is not requested:
        plan.notes.append("No earlier checkpoint is readable: a full rerun from the input.")

    plan.state_patch = patch
    plan.context = run.context if context is None else validate_context(run.graph, context)
    if plan.source is not None:
        if patch and plan.target.namespace:
            raise InvalidInput(
                "state_patch sets the graph's state, which a subgraph does not read again once "
                f"it runs: retry from {top_stage(plan.target.stage_name)!r} to patch it."
            )
        plan.reused = _reused(rows, plan.target)
        plan.will_run = reachable_stages(run.graph, plan.target.stage_name)
        plan.input = run.input
        before = plan.source.checkpoint["channel_values"]
    else:
        not_input = sorted(set(patch) - set(_input_fields(run.graph)))
        if not_input:
            raise InvalidInput(
                f"This retry starts from the run's input, so state_patch can only set input "
                f"fields ({', '.join(_input_fields(run.graph))}); not: {', '.join(not_input)}."
            )
        plan.will_run = stage_names(run.graph)
        plan.input = validate_input(run.graph, {**run.input, **patch}) if patch else run.input
        before = run.input
    plan.state_diff = {
        key: {"before": to_json(before.get(key)), "after": value}
        for key, value in patch.items()
        if to_json(before.get(key)) != value
    }
    return plan


def _active_retry(run: PipelineRun, stage_name: str) -> PipelineRun | None:
    retries = PipelineRun.objects.filter(parent_run=run, retry_from_stage=stage_name)
    return retries.active().order_by("created_at").first()


def _refuse_active(run: PipelineRun, active: PipelineRun) -> Conflict:
    return Conflict(
        f"A retry of run {run.pk} from {active.retry_from_stage!r} is already {active.status}: "
        f"run {active.pk}.",
        active_run_id=str(active.pk),
    )


def retry_run(
    *,
    run: PipelineRun,
    from_stage: str | None = None,
    stage_execution_id: int | None = None,
    state_patch: dict | None = None,
    context: dict | None = None,
    replay_answers: bool = False,
    actor: Actor = SYSTEM,
    reason: str = "",
) -> PipelineRun:
    """Create and queue a new run that resumes `run` from a stage. `run` is never changed.

    A stage that asks an operator a question (`interrupt()`) asks again, unless
    `replay_answers`: then the answer its lineage gave to the same stage is given again."""
    plan = plan_retry(
        run=run,
        from_stage=from_stage,
        stage_execution_id=stage_execution_id,
        state_patch=state_patch,
        context=context,
    )
    plan.replay_answers = replay_answers
    return _create_child(plan, AuditAction.RETRY, actor, reason)


def _create_child(plan: RetryPlan, action: AuditAction, actor: Actor, reason: str) -> PipelineRun:
    run = plan.run
    refuse_unstorable(reason=reason)  # before the fork: nothing to undo
    if active := _active_retry(run, plan.stage_name):
        raise _refuse_active(run, active)
    new_id = uuid.uuid4()
    # Outside the transaction: on SQLite the checkpointer writes the same file, and must not
    # wait on a write lock this transaction holds.
    for level in plan.levels:
        fork_checkpoint(
            run.graph,
            level.source,
            str(new_id),
            namespace=level.row.namespace,
            patch=plan.state_patch if level is plan.levels[0] else None,
            rerun_task_id=level.row.task_id,
        )
    try:
        with transaction.atomic():
            retry = PipelineRun.objects.create(
                id=new_id,
                graph=run.graph,
                input=plan.input,
                context=plan.context,
                subject=run.subject,
                parent_run=run,
                root_run_id=run.root_run_id or run.pk,
                retry_from_stage=plan.stage_name,
                retry_depth=plan.depth,
                replay_answers=plan.replay_answers,
                resume_mode=plan.resume_mode,
                resume_note=" ".join(plan.notes),
                requested_by=actor.user,
                requested_via=actor.via,
                reason=reason,
                queued_at=timezone.now(),
            )
            StageExecution.objects.bulk_create(
                StageExecution(
                    run=retry,
                    stage_name=row.stage_name,
                    stage_order=row.stage_order,
                    namespace=row.namespace,
                    status=StageStatus.REUSED,
                    task_id=row.task_id,
                    duration_ms=0,
                    input_snapshot=row.input_snapshot,
                    output_snapshot=row.output_snapshot,
                    checkpoint_id=row.checkpoint_id,
                    parent_checkpoint_id=row.parent_checkpoint_id,
                    reused_from_id=row.original_id,
                )
                for row in plan.reused
            )
            audit(action, actor, run=run, result_run=retry, reason=reason, **plan.to_dict())
            transaction.on_commit(lambda: queue_task(retry))
    except IntegrityError:
        if plan.source is not None:
            delete_thread(str(new_id))
        active = _active_retry(run, plan.stage_name)
        if active is None:
            raise
        raise _refuse_active(run, active) from None
    return retry


@dataclass
class BulkRetry:
    """What a retry of many runs (or stages) did: the new runs, and what it skipped and why."""

    retried: list[PipelineRun] = field(default_factory=list)
    skipped: list[tuple[PipelineRun | StageExecution, PipelineError]] = field(default_factory=list)


def retry_failed_runs(
    *,
    runs,
    from_stage: str | None = None,
    actor: Actor = SYSTEM,
    reason: str = "",
) -> BulkRetry:
    """Retry each of `runs` from `from_stage`, or from its latest failed stage execution. A
    run bulk retries do not take (`RunQuerySet.bulk_retryable`: already retried or rerun, or
    recovered by a later run of its lineage) is skipped with the reason, as is one that cannot
    be retried; the others are retried all the same. Admin and API both retry in bulk here."""
    runs = list(runs)
    ids = [run.pk for run in runs]
    # Recovered runs are skipped first (below), so of `bulk_retryable` only this part is left.
    takes = set(
        PipelineRun.objects.filter(pk__in=ids).not_yet_retried().values_list("pk", flat=True)
    )
    recovered = dict(
        PipelineRun.objects.filter(pk__in=ids)
        .with_recovery()
        .filter(recovered_by_id__isnull=False)
        .values_list("pk", "recovered_by_id")
    )
    result = BulkRetry()
    for run in runs:
        try:
            if run.pk in recovered:
                raise AlreadyRecovered(
                    f"Run {run.pk} was already recovered: run {recovered[run.pk]} of its "
                    "lineage succeeded."
                )
            if run.pk not in takes:
                raise AlreadyRetried(
                    f"Run {run.pk} was already retried; its lineage shows how the retries went."
                )
            if from_stage:
                target = {"from_stage": from_stage}
            elif failed := latest_failed_stage(run):
                target = {"stage_execution_id": failed.pk}
            else:
                raise NoFailedStage("no failed stage")
            result.retried.append(retry_run(run=run, actor=actor, reason=reason, **target))
        except PipelineError as exc:
            result.skipped.append((run, exc))
    return result


def retry_from_stages(*, stages, actor: Actor = SYSTEM, reason: str = "") -> BulkRetry:
    """Retry the run of each stage execution from that stage; one that cannot be retried is
    skipped with the reason."""
    result = BulkRetry()
    for row in stages.select_related("run"):
        try:
            retry = retry_run(run=row.run, stage_execution_id=row.pk, actor=actor, reason=reason)
            result.retried.append(retry)
        except PipelineError as exc:
            result.skipped.append((row, exc))
    return result


def rerun_run(*, run: PipelineRun, actor: Actor = SYSTEM, reason: str = "") -> PipelineRun:
    """A new run of the same graph from the original input, recorded in the run's lineage."""
    _check_retryable(run)
    try:
        stages = stage_names(run.graph)
    except UnknownGraph:
        raise RetryNotAllowed(f"Graph {run.graph!r} is no longer registered.") from None
    plan = RetryPlan(
        run=run,
        requested=None,
        resume_mode=ResumeMode.FULL_RERUN,
        will_run=stages,
        input=validate_input(run.graph, run.input),
        context=run.context,
        notes=["Rerun from scratch: a fresh run from the original input."],
    )
    return _create_child(plan, AuditAction.RERUN, actor, reason)


def cancel_run(*, run: PipelineRun, actor: Actor = SYSTEM, reason: str = "") -> PipelineRun:
    """A pending or interrupted run never (re)starts; a running one stops at its next stage
    boundary (or when a long stage calls `progress.tick()`) and ends `cancelled`."""
    now = timezone.now()
    with transaction.atomic():
        runs = PipelineRun.objects.filter(pk=run.pk)
        stopped = runs.stopped_by_cancel().update(
            status=RunStatus.CANCELLED,
            cancel_requested=True,
            finished_at=now,
            waiting_since=None,
            error_message=f"Cancelled{f': {reason}' if reason else ''}.",
        )
        flagged = stopped or runs.cancellable().update(cancel_requested=True)
        run.refresh_from_db()
        if not flagged:
            raise Conflict(
                f"Run {run.pk} is {run.status}; only a pending, running, waiting or interrupted "
                "run can be cancelled."
            )
        # A cancelled wait: its questions are no longer asked.
        run.stages.filter(status=StageStatus.WAITING).update(
            status=StageStatus.CANCELLED, finished_at=now
        )
        audit(
            AuditAction.CANCEL,
            actor,
            run=run,
            reason=reason,
            was=("running" if not stopped else "not running"),
        )
    return run


def _question_to_answer(open_questions: list[Question], run: PipelineRun, interrupt_id):
    if interrupt_id is None:
        if len(open_questions) > 1:
            ids = ", ".join(q.interrupt_id for q in open_questions)
            raise Conflict(
                f"Run {run.pk} asks {len(open_questions)} questions; answer one at a time by its "
                f"interrupt id ({ids})."
            )
        return open_questions[0]
    for question in open_questions:
        if question.interrupt_id == interrupt_id:
            return question
    ids = ", ".join(q.interrupt_id for q in open_questions) or "none"
    raise Conflict(
        f"Run {run.pk} asks no open question with interrupt id {interrupt_id!r}; open: {ids}."
    )


def _check_answer(question: Question, value) -> None:
    if question.response_schema is None:
        return
    import jsonschema

    try:
        jsonschema.validate(value, question.response_schema)
    except jsonschema.ValidationError as exc:
        raise InvalidInput(
            f"The answer does not match the question's schema: {exc.message}"
        ) from None
    except jsonschema.SchemaError:
        logger.warning("question %s has an invalid response schema", question.pk)


def answer_run(
    *,
    run: PipelineRun,
    value,
    interrupt_id: str | None = None,
    actor: Actor = SYSTEM,
    reason: str = "",
) -> PipelineRun:
    """Answer one question of a waiting run (by its interrupt id when it asks several). Once
    every question is answered, the same run continues on its own thread: the stages that
    asked run again and get their answers (LangGraph's `Command(resume=...)`)."""
    refuse_unstorable(value=value, reason=reason)
    now = timezone.now()
    with transaction.atomic():
        waiting = PipelineRun.objects.select_for_update().waiting().filter(pk=run.pk).first()
        if waiting is None:
            run.refresh_from_db()
            raise Conflict(f"Run {run.pk} is {run.status}; only a waiting run can be answered.")
        open_questions = list(waiting.questions.filter(answered_at__isnull=True))
        if not open_questions:
            raise Conflict(f"Run {run.pk} has no open question.")
        question = _question_to_answer(open_questions, run, interrupt_id)
        _check_answer(question, value)
        Question.objects.filter(pk=question.pk).update(
            answer=value,
            answered_at=now,
            answered_by=actor.user,
            answered_via=actor.via,
            answered_by_label=actor.name,
        )
        audit(
            AuditAction.ANSWER,
            actor,
            run=waiting,
            reason=reason,
            interrupt_id=question.interrupt_id,
            stage=question.stage_name,
            question=capped(question.value, ANSWER_AUDIT_BYTES),
            answer=capped(value, ANSWER_AUDIT_BYTES),
        )
        if len(open_questions) == 1:
            _continue_after_answers(waiting, now)
    run.refresh_from_db()
    return run


ANSWER_AUDIT_BYTES = 4096


def _continue_after_answers(run: PipelineRun, now) -> None:
    """Every question is answered: close the wait and queue the run to continue."""
    for stage in run.stages.filter(status=StageStatus.WAITING):
        waited = now - stage.started_at if stage.started_at else None
        StageExecution.objects.filter(pk=stage.pk).update(
            status=StageStatus.ANSWERED,
            finished_at=now,
            duration_ms=int(waited.total_seconds() * 1000) if waited else None,
        )
    PipelineRun.objects.filter(pk=run.pk).waiting().update(
        status=RunStatus.PENDING,
        waiting_since=None,
        finished_at=None,
        queued_at=now,
    )
    transaction.on_commit(partial(queue_task, run))


def answers_to_resume(run: PipelineRun) -> "Command | None":
    """What a run continues with: the answers to the questions its thread still waits on, as
    LangGraph's resume map (None: it continues from its latest checkpoint as it is)."""
    answered = dict(
        run.questions.filter(answered_at__isnull=False).values_list("interrupt_id", "answer")
    )
    if not answered:
        return None
    from langgraph.types import Command

    state = compiled_graph(run.graph).get_state(checkpoint_config(run.thread_id))
    answers = {i.id: answered[i.id] for i in state.interrupts if i.id in answered}
    return Command(resume=answers) if answers else None


def replay_answers(run: PipelineRun, questions: list[Question]) -> "Command | None":
    """For a retry asked to replay answers: answer `questions` with what its lineage answered
    to the same stages, if it answered all of them; record them as answered by the system."""
    earlier = {}
    for question in Question.objects.filter(
        run__in=ancestor_ids(run), answered_at__isnull=False
    ).order_by("answered_at"):
        earlier.setdefault(question.stage_name, question)
    if not questions or any(q.stage_name not in earlier for q in questions):
        return None
    now = timezone.now()
    with transaction.atomic():
        for question in questions:
            source = earlier[question.stage_name]
            question.answer, question.answered_at = source.answer, now
            question.answered_via, question.answered_by_label = Surface.SYSTEM, "replay"
            audit(
                AuditAction.ANSWER,
                Actor(label="replay"),
                run=run,
                reason=f"replayed the answer given in run {source.run_id}",
                interrupt_id=question.interrupt_id,
                stage=question.stage_name,
                answer=capped(source.answer, ANSWER_AUDIT_BYTES),
            )
        Question.objects.bulk_create(questions, ignore_conflicts=True)
    from langgraph.types import Command

    return Command(resume={q.interrupt_id: q.answer for q in questions})


def answer_deadline(run: PipelineRun) -> timedelta | None:
    """How long the run may wait for an answer: its graph's `interrupt_timeout` (seconds),
    else GAMED_INTERRUPT_TIMEOUT; None: for ever."""
    seconds = graph_attribute(run.graph, "interrupt_timeout", settings.GAMED_INTERRUPT_TIMEOUT)
    return timedelta(seconds=seconds) if seconds else None


def expire_waiting_runs(now=None) -> list[PipelineRun]:
    """Runs that waited past their deadline: answered with the default their graph declares
    (`interrupt_default`), or cancelled; either audited as the system's."""
    now = now or timezone.now()
    expired = []
    for run in PipelineRun.objects.waiting().exclude(waiting_since=None):
        try:
            deadline = answer_deadline(run)
            default = graph_attribute(run.graph, "interrupt_default", NO_DEFAULT)
        except PipelineError:
            continue
        if deadline is None or run.waiting_since + deadline > now:
            continue
        why = f"no answer within {format_duration(deadline)}"
        try:
            if default is NO_DEFAULT:
                cancel_run(run=run, actor=DEADLINE, reason=why)
            else:
                for question in run.questions.filter(answered_at__isnull=True):
                    answer_run(
                        run=run,
                        value=default,
                        interrupt_id=question.interrupt_id,
                        actor=DEADLINE,
                        reason=f"{why}: the graph's default answer",
                    )
        except Conflict:
            continue  # answered or cancelled meanwhile
        except InvalidInput as error:
            # A default its question refuses must not stop the runs after this one expiring.
            cancel_run(run=run, actor=DEADLINE, reason=f"{why}; default answer refused: {error}")
        expired.append(run)
    return expired


def _queue_again(runs, run: PipelineRun, actor: Actor, reason: str, **changes) -> bool:
    """Put `run` back to pending (if `runs` still selects it) and queue it; the error it
    ended with moves to the resume's audit record. False if it was not in that state."""
    run.refresh_from_db()
    with transaction.atomic():
        queued = runs.filter(pk=run.pk).update(
            status=RunStatus.PENDING,
            cancel_requested=False,
            finished_at=None,
            error_message="",
            error_traceback="",
            **changes,
        )
        if not queued:
            return False
        audit(
            AuditAction.RESUME,
            actor,
            run=run,
            result_run=run,
            reason=reason,
            was=run.status,
            previous_error=run.error_message,
        )
        transaction.on_commit(partial(enqueue_run, run))
    run.refresh_from_db()
    return True


def take_over_run(runs, **running) -> PipelineRun | None:
    """A worker continues an interrupted run that `runs` selects (a task for it was delivered
    again), with the `running` fields of its claim: like a resume, the error it was interrupted
    with moves to the audit trail, so a run that then succeeds shows no error. None if there is
    no such run, or another worker took it first."""
    with transaction.atomic():
        run = runs.filter(status=RunStatus.INTERRUPTED).first()
        if run is None:
            return None
        taken = runs.filter(pk=run.pk, status=RunStatus.INTERRUPTED).update(
            **running, error_message="", error_traceback=""
        )
        if not taken:
            return None
        audit(
            AuditAction.RESUME,
            Actor(label=f"worker {running['worker']}"),
            run=run,
            result_run=run,
            reason="taken over by a worker",
            was=run.status,
            previous_error=run.error_message,
        )
    return PipelineRun.objects.get(pk=run.pk)


def resume_run(*, run: PipelineRun, actor: Actor = SYSTEM, reason: str = "") -> PipelineRun:
    """Continue an interrupted or cancelled run on its own thread from its latest checkpoint:
    completed stages (parallel siblings included) never run again; the stage that was cut
    short runs again as a new attempt."""
    if not _queue_again(PipelineRun.objects.resumable(), run, actor, reason):
        raise Conflict(
            f"Run {run.pk} is {run.status}; only an interrupted or cancelled run can be "
            "resumed. Retry a failed run from its failed stage instead."
        )
    return run


def reap_runs(*, run_id=None, auto_resume: bool | None = None) -> list[PipelineRun]:
    """Mark runs whose worker stopped renewing its lease `interrupted` (their running stage
    too), then queue interrupted runs to resume while under GAMED_MAX_AUTO_RESUMES.

    Called by a django-q2 schedule every minute, by `manage.py reap_runs`, and by a
    redelivered task before it claims its run. Returns the runs it interrupted or resumed.
    """
    now = timezone.now()
    auto_resume = settings.GAMED_AUTO_RESUME if auto_resume is None else auto_resume
    runs = PipelineRun.objects.all() if run_id is None else PipelineRun.objects.filter(pk=run_id)
    touched = []
    for stale in runs.lease_expired(now):
        message = (
            f"Worker {stale.worker or '?'} stopped renewing its lease "
            f"(expired {stale.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC)."
        )
        with transaction.atomic():
            # Conditional on the lease we saw: a heartbeat that renewed it meanwhile wins.
            reaped = (
                runs.filter(pk=stale.pk, lease_expires_at=stale.lease_expires_at)
                .lease_expired(now)
                .update(status=RunStatus.INTERRUPTED, finished_at=now, error_message=message)
            )
            if not reaped:
                continue
            stale.stages.filter(status=StageStatus.RUNNING).update(
                status=StageStatus.INTERRUPTED, finished_at=now, error_message=message
            )
            audit(AuditAction.REAP, REAPER, run=stale, reason=message)
        touched.append(stale)
    # A task can be lost with its worker (the Redis broker is at-most-once, the ORM broker
    # redelivers only after Q_CLUSTER["retry"]): queue pending runs again. A duplicate task is
    # harmless, the claim lets one through.
    requeue_before = now - timedelta(seconds=settings.GAMED_REQUEUE_AFTER_SECONDS)
    for waiting in runs.claimable().filter(status=RunStatus.PENDING, queued_at__lt=requeue_before):
        logger.warning("run %s waited since %s: queued again", waiting.pk, waiting.queued_at)
        enqueue_run(waiting)
    if auto_resume:
        resumable = runs.filter(
            status=RunStatus.INTERRUPTED,
            cancel_requested=False,
            auto_resumes__lt=settings.GAMED_MAX_AUTO_RESUMES,
        )
        for run in resumable:
            # Conditional on the count we saw: two reapers at once resume it once.
            same = PipelineRun.objects.filter(
                status=RunStatus.INTERRUPTED, auto_resumes=run.auto_resumes
            )
            if not _queue_again(
                same,
                run,
                REAPER,
                "automatic resume after interruption",
                auto_resumes=F("auto_resumes") + 1,
            ):
                continue
            if run not in touched:
                touched.append(run)
    return touched


@dataclass
class PruneReport:
    runs: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    dry_run: bool = False

    def add(self, runs: int, usage: ThreadUsage) -> None:
        self.runs += runs
        self.bytes += usage.bytes
        for table, n in usage.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n


def prunable_runs(*, older_than: timedelta):
    """Finished runs past the retention window whose whole retry chain is finished too."""
    cutoff = timezone.now() - older_than
    chain = Coalesce("root_run_id", "id")
    busy_chains = (
        PipelineRun.objects.filter(status__in=CHECKPOINTS_KEPT_STATUSES)
        .annotate(chain=chain)
        .values("chain")
    )
    return (
        PipelineRun.objects.exclude(status__in=CHECKPOINTS_KEPT_STATUSES)
        .filter(finished_at__lt=cutoff, checkpoints_pruned_at__isnull=True)
        .annotate(chain=chain)
        .exclude(chain__in=busy_chains)
        .order_by("finished_at", "id")
    )


def prune_checkpoints(
    *,
    older_than: timedelta | None = None,
    dry_run: bool = False,
    batch_size: int = 100,
    progress=None,
) -> PruneReport:
    """Delete the LangGraph checkpoints of finished runs older than the retention window.

    Works in batches (each thread is deleted by the saver in its own short transaction), never
    touches a run that is active, whose retry chain has an active or interrupted run, or that
    is inside the window. Run and stage rows stay; the run is marked `checkpoints_pruned_at`,
    and a retry of it falls back to a full rerun.
    """
    older_than = older_than or timedelta(seconds=settings.GAMED_CHECKPOINT_RETENTION_SECONDS)
    report = PruneReport(dry_run=dry_run)
    last = None
    while True:
        candidates = prunable_runs(older_than=older_than)
        if dry_run and last is not None:
            candidates = candidates.filter(
                Q(finished_at__gt=last[0]) | Q(finished_at=last[0], id__gt=last[1])
            )
        batch = list(candidates.values_list("id", "thread_id", "finished_at")[:batch_size])
        if not batch:
            return report
        threads = [thread for _, thread, _ in batch]
        usage = thread_usage(threads)
        if not dry_run:
            delete_threads(threads)
            PipelineRun.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(
                checkpoints_pruned_at=timezone.now()
            )
        report.add(len(batch), usage)
        last = (batch[-1][2], batch[-1][0])
        if progress:
            progress(report)
