"""Reads the surfaces share: annotated querysets so lists cost a constant number of queries."""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DecimalField,
    Exists,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from pipeline.exceptions import PipelineError, RunNotFound
from pipeline.forking import checkpoint_config
from pipeline.graphs import compiled_graph, stage_names, top_stage
from pipeline.models import (
    DONE_STAGE_STATUSES,
    TERMINAL_RUN_STATUSES,
    PipelineRun,
    RunStatus,
    StageExecution,
    StageStatus,
    subgraph_execution,
)
from pipeline.snapshots import to_json

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot


def get_run(run_id: str) -> PipelineRun:
    try:
        return (
            PipelineRun.objects.select_related("parent_run", "root_run", "requested_by")
            .with_recovery()
            .get(pk=run_id)
        )
    except (PipelineRun.DoesNotExist, ValueError, ValidationError):
        raise RunNotFound(f"No run with id {run_id!r}.") from None


RUN_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def find_run(prefix_or_id: str) -> PipelineRun:
    """A run by full id or by a unique prefix of it (as `runs` prints them)."""
    text = prefix_or_id.strip().lower()
    if not RUN_ID_PREFIX.fullmatch(text):
        raise RunNotFound(f"No run with id {prefix_or_id!r}.")
    if len(text) == 36:
        return get_run(text)
    matches = list(PipelineRun.objects.filter(pk__startswith=text).values_list("pk", flat=True)[:2])
    if len(matches) == 1:
        return get_run(str(matches[0]))
    if not matches:
        raise RunNotFound(f"No run with id {prefix_or_id!r}.")
    raise RunNotFound(f"Run id prefix {prefix_or_id!r} is ambiguous; give more characters.")


def latest_failed_stage(run: PipelineRun) -> StageExecution | None:
    """The stage an operator most likely wants to retry from."""
    return run.stages.filter(status=StageStatus.FAILED).order_by("-stage_order").first()


# Operator console reads (runs list, run page, statistics) ----------------------------------


def _stage_count(stages: QuerySet[StageExecution]) -> Coalesce:
    counted = stages.order_by().values("run").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def console_runs() -> QuerySet[PipelineRun]:
    """Runs with stage progress, the failed stage, what recovered a failure and what the run's
    model calls cost (None: no priced call), as correlated subqueries: a page of the runs list
    computes them for its own rows only, however many stage rows exist."""
    stages = StageExecution.objects.filter(run=OuterRef("pk"))
    failed = stages.filter(status=StageStatus.FAILED).order_by("-stage_order")
    cost = stages.executed().order_by().values("run").annotate(cost=Sum("cost_usd"))
    return PipelineRun.objects.with_recovery().annotate(
        stage_count=_stage_count(stages.in_progress_count()),
        stages_done=_stage_count(stages.filter(status__in=DONE_STAGE_STATUSES)),
        failed_stage=Subquery(failed.values("stage_name")[:1]),
        cost_usd=Subquery(cost.values("cost")[:1], output_field=DecimalField()),
        failed_stage_id=Subquery(failed.values("pk")[:1]),
        last_stage=Subquery(stages.order_by("-stage_order").values("stage_name")[:1]),
    )


def expected_stage_count(run: PipelineRun, counted: int, last_stage: str | None) -> int:
    """The "m" of a run's "n/m stages done": the stage rows that count, and while the run is
    still to start or running, the graph's stages declared after the latest one it reached
    (a pending retry has its reused rows, and everything from its retry stage still to run).
    A conditional stage may yet be skipped and a loop may add executions: an estimate until
    the run ends, exact after."""
    if run.is_terminal:
        return counted
    try:
        names = stage_names(run.graph)
    except PipelineError:
        return counted
    if not last_stage:
        return counted + len(names)
    top = top_stage(last_stage)
    return counted + (len(names) - names.index(top) - 1 if top in names else 0)


def failed_stage_names() -> list[str]:
    return list(
        StageExecution.objects.filter(status=StageStatus.FAILED)
        .order_by("stage_name")
        .values_list("stage_name", flat=True)
        .distinct()
    )


def run_stages(run: PipelineRun) -> QuerySet[StageExecution]:
    """A run's stage rows in execution order, with the rows reused ones point at."""
    return (
        run.stages.select_related("reused_from")
        .prefetch_related("model_usage")
        .order_by("stage_order")
    )


def nested(stages: list[StageExecution]) -> list[StageExecution]:
    """Stages in execution order, each subgraph stage followed by the stages that ran inside
    it (a retry's reused inner rows keep their parent run's order, which can be earlier)."""
    children: dict[int | None, list[StageExecution]] = {}
    for stage in stages:
        parent = (
            subgraph_execution(stages, stage.parent_task_id, stage) if stage.namespace else None
        )
        children.setdefault(parent.pk if parent else None, []).append(stage)
    ordered: list[StageExecution] = []
    pending = list(reversed(children.get(None, [])))
    while pending:
        stage = pending.pop()
        ordered.append(stage)
        pending.extend(reversed(children.get(stage.pk, [])))
    return ordered


@dataclass
class Lineage:
    """A run's whole retry tree, from its root, depth first."""

    root: PipelineRun
    runs: list[tuple[PipelineRun, int]]
    succeeded: PipelineRun | None
    active: list[PipelineRun]

    @property
    def outcome(self) -> str:
        """Did any run of the tree succeed? Otherwise: still trying, or how the latest ended."""
        if self.succeeded is not None:
            return RunStatus.SUCCEEDED
        if self.active:
            return RunStatus.RUNNING
        return max((run for run, _ in self.runs), key=lambda r: r.created_at).status


def run_lineage(run: PipelineRun) -> Lineage:
    root_id = run.root_run_id or run.pk
    members = list(
        PipelineRun.objects.filter(Q(pk=root_id) | Q(root_run_id=root_id))
        .select_related("requested_by")
        .order_by("created_at")
    )
    children: dict = {}
    for member in members:
        children.setdefault(member.parent_run_id, []).append(member)
    root = next((m for m in members if m.pk == root_id), run)
    ordered: list[tuple[PipelineRun, int]] = []
    pending = [(root, 0)]
    while pending:
        member, level = pending.pop()
        ordered.append((member, level))
        pending.extend((child, level + 1) for child in reversed(children.get(member.pk, [])))
    succeeded = [m for m, _ in ordered if m.status == RunStatus.SUCCEEDED]
    return Lineage(
        root=root,
        runs=ordered,
        succeeded=min(succeeded, key=lambda r: r.created_at) if succeeded else None,
        active=[m for m, _ in ordered if m.is_active],
    )


@dataclass
class StageStatistics:
    stage_name: str
    executions: int = 0
    failures: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    retries: int = 0
    retries_finished: int = 0
    retries_succeeded: int = 0
    model_calls: int = 0
    tokens: int = 0
    cost_usd: Decimal | None = None
    tokens_p95: float | None = None
    cost_p95: float | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.executions if self.executions else None

    @property
    def retry_success_rate(self) -> float | None:
        return self.retries_succeeded / self.retries_finished if self.retries_finished else None


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as Postgres's percentile_cont computes it."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _PercentileCont(Aggregate):
    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float):
        super().__init__(expression, fraction=float(fraction))


def _percentiles(values: QuerySet[StageExecution], field: str) -> dict[str, tuple]:
    """p50 and p95 of `field` per stage name, over the rows where it is set."""
    measured = values.filter(**{f"{field}__isnull": False}).order_by()
    if connection.vendor == "postgresql":
        rows = measured.values("stage_name").annotate(
            p50=_PercentileCont(field, 0.5), p95=_PercentileCont(field, 0.95)
        )
        return {row["stage_name"]: (row["p50"], row["p95"]) for row in rows}
    # SQLite has no percentile aggregate: sort each stage's values here.
    by_stage: dict[str, list[float]] = {}
    for name, value in measured.order_by("stage_name", field).values_list("stage_name", field):
        by_stage.setdefault(name, []).append(float(value))
    return {
        name: (percentile(values, 0.5), percentile(values, 0.95))
        for name, values in by_stage.items()
    }


def stage_statistics(*, since: datetime | None = None) -> list[StageStatistics]:
    """Per stage name: real executions (reused rows excluded), failures, p50/p95 duration,
    model calls, tokens and cost (totals, and p95 per execution that called a model), and how
    retries started from that stage ended."""
    executed = StageExecution.objects.executed()
    retries = PipelineRun.objects.filter(parent_run__isnull=False).exclude(retry_from_stage="")
    if since is not None:
        executed = executed.filter(run__created_at__gte=since)
        retries = retries.filter(created_at__gte=since)
    stats: dict[str, StageStatistics] = {}
    for row in (
        executed.order_by()
        .values("stage_name")
        .annotate(
            n=Count("pk"),
            failed=Count("pk", filter=Q(status=StageStatus.FAILED)),
            calls=Coalesce(Sum("model_calls"), 0),
            tokens=Coalesce(Sum("total_tokens"), 0),
            cost=Sum("cost_usd"),
        )
    ):
        stats[row["stage_name"]] = StageStatistics(
            row["stage_name"],
            executions=row["n"],
            failures=row["failed"],
            model_calls=row["calls"],
            tokens=row["tokens"],
            cost_usd=row["cost"],
        )
    for name, (p50, p95) in _percentiles(executed, "duration_ms").items():
        stats[name].p50_ms, stats[name].p95_ms = p50, p95
    called = executed.filter(model_calls__gt=0)
    for name, (_, p95) in _percentiles(called, "total_tokens").items():
        stats[name].tokens_p95 = p95
    for name, (_, p95) in _percentiles(called, "cost_usd").items():
        stats[name].cost_p95 = p95
    for row in (
        retries.order_by()
        .values("retry_from_stage")
        .annotate(
            n=Count("pk"),
            finished=Count("pk", filter=Q(status__in=TERMINAL_RUN_STATUSES)),
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCEEDED)),
        )
    ):
        entry = stats.setdefault(row["retry_from_stage"], StageStatistics(row["retry_from_stage"]))
        entry.retries, entry.retries_finished = row["n"], row["finished"]
        entry.retries_succeeded = row["succeeded"]
    return sorted(stats.values(), key=lambda s: s.stage_name)


def stage_trend(*, days: int = 14) -> dict[str, list[tuple[date, int, int]]]:
    """Per stage name, for each of the last `days` days (today included): how many times it
    really ran (reused rows excluded) and how many of those failed. One query."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        StageExecution.objects.executed()
        .filter(started_at__gte=start)
        .annotate(day=TruncDate("started_at"))
        .order_by()
        .values("stage_name", "day")
        .annotate(n=Count("pk"), failed=Count("pk", filter=Q(status=StageStatus.FAILED)))
    )
    counts: dict[str, dict[date, tuple[int, int]]] = {}
    for row in rows:
        counts.setdefault(row["stage_name"], {})[row["day"]] = (row["n"], row["failed"])
    return {
        name: [
            (day, *by_day.get(day, (0, 0)))
            for day in (first + timedelta(days=offset) for offset in range(days))
        ]
        for name, by_day in sorted(counts.items())
    }


def run_outcomes_by_day(*, days: int = 14) -> dict[str, list[tuple[date, dict[str, int]]]]:
    """Per graph, for each of the last `days` days (today included): runs created, by status."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        PipelineRun.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("graph", "day", "status")
        .annotate(n=Count("pk"))
    )
    counts: dict[str, dict[date, dict[str, int]]] = {}
    for row in rows:
        counts.setdefault(row["graph"], {}).setdefault(row["day"], {})[row["status"]] = row["n"]
    return {
        graph: [
            (day, by_day.get(day, {}))
            for day in (first + timedelta(days=offset) for offset in range(days))
        ]
        for graph, by_day in sorted(counts.items())
    }


@dataclass
class LogLine:
    """One record of `StageExecution.logs`, with the stage it belongs to."""

    stage_order: int
    stage_name: str
    seq: int
    level: int
    level_name: str
    logger: str
    message: str
    created_at: datetime | None
    extra: dict

    @classmethod
    def from_record(cls, stage_order: int, stage_name: str, seq: int, record: dict) -> "LogLine":
        when = record.get("time")
        return cls(
            stage_order=stage_order,
            stage_name=stage_name,
            seq=seq,
            level=record.get("level", logging.INFO),
            level_name=record.get("level_name", "INFO"),
            logger=record.get("logger", ""),
            message=record.get("message", ""),
            created_at=datetime.fromtimestamp(when, tz=UTC) if when else None,
            extra=record.get("extra") or {},
        )


def log_lines(
    run: PipelineRun,
    *,
    stage_order: int | None = None,
    stage_name: str | None = None,
    min_level: int = 0,
) -> list[LogLine]:
    """The run's stage log records in order: of one execution or one stage, from a level up."""
    stages = run.stages.order_by("stage_order")
    if stage_order is not None:
        stages = stages.filter(stage_order=stage_order)
    if stage_name is not None:
        stages = stages.filter(stage_name=stage_name)
    return [
        line
        for order, name, records in stages.values_list("stage_order", "stage_name", "logs")
        for seq, record in enumerate(records or [], start=1)
        if (line := LogLine.from_record(order, name, seq, record)).level >= min_level
    ]


# --- Reads of the JSON API (observability.api) -------------------------------------------------


def api_runs() -> QuerySet[PipelineRun]:
    """`console_runs()` newest first, ties broken by id so that pages are stable."""
    return console_runs().order_by("-created_at", "-id")


def bulk_retry_candidates(
    *,
    status: str = RunStatus.FAILED,
    graph: str | None = None,
    failed_stage: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[PipelineRun]:
    """Runs a bulk retry would take, newest first: in `status`, neither retried nor recovered
    yet (`RunQuerySet.bulk_retryable`), filtered."""
    runs = PipelineRun.objects.filter(status=status).bulk_retryable()
    if graph:
        runs = runs.filter(graph=graph)
    if failed_stage:
        runs = runs.filter(runs_failed_at(failed_stage))
    if created_after:
        runs = runs.filter(created_at__gte=created_after)
    if created_before:
        runs = runs.filter(created_at__lt=created_before)
    return runs.order_by("-created_at", "-id")


@dataclass
class RunTotals:
    """What a run cost: time, and tokens and money of the stages it executed itself."""

    duration_ms: int | None
    stage_time_ms: int
    executed_stages: int
    reused_stages: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None  # None: no stage it executed had a priced model call
    reports_usage: bool


def run_totals(run: PipelineRun, stages: list[StageExecution]) -> RunTotals:
    """Totals over the run's stage rows (already loaded); reused rows cost this run nothing."""
    executed = [s for s in stages if s.executed]
    priced = [s.cost_usd for s in executed if s.cost_usd is not None]
    duration = run.duration
    return RunTotals(
        duration_ms=int(duration.total_seconds() * 1000) if duration else None,
        stage_time_ms=sum(s.duration_ms or 0 for s in executed),
        executed_stages=len(executed),
        reused_stages=len(stages) - len(executed),
        model_calls=sum(s.model_calls for s in executed),
        prompt_tokens=sum(s.prompt_tokens or 0 for s in executed),
        completion_tokens=sum(s.completion_tokens or 0 for s in executed),
        total_tokens=sum(s.total_tokens or 0 for s in executed),
        cost_usd=sum(priced, Decimal(0)) if priced else None,
        reports_usage=any(
            s.model_calls or s.prompt_tokens is not None or s.cost_usd is not None or s.model_id
            for s in stages
        ),
    )


@dataclass
class UsageTotals:
    runs: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None  # None: no priced model call in the lineage


def lineage_usage(run: PipelineRun) -> UsageTotals:
    """What the run's whole retry tree cost: every stage that executed in any of its runs
    (reused rows once, where they ran). One aggregate query."""
    root_id = run.root_run_id or run.pk
    totals = (
        StageExecution.objects.executed()
        .filter(runs_in_lineage(root_id, prefix="run__"))
        .aggregate(
            runs=Count("run", distinct=True),
            model_calls=Coalesce(Sum("model_calls"), 0),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            total_tokens=Coalesce(Sum("total_tokens"), 0),
            cost_usd=Sum("cost_usd"),
        )
    )
    return UsageTotals(**totals)


def runs_failed_at(stage_name: str) -> Q:
    """Runs in which `stage_name` failed (a filter for `api_runs()`)."""
    failed = StageExecution.objects.filter(
        run=OuterRef("pk"), stage_name=stage_name, status=StageStatus.FAILED
    )
    return Q(Exists(failed))


def runs_in_lineage(run_id: str, *, prefix: str = "") -> Q:
    """The retry tree `run_id` is the root of (or belongs to, given its root's id); `prefix`
    filters another model by its run ("run__")."""
    return Q(**{f"{prefix}pk": run_id}) | Q(**{f"{prefix}root_run_id": run_id})


def get_run_detail(run_id: str) -> PipelineRun:
    """A run with `stage_list`, `lineage` and `ancestor_ids`: the same few queries whatever
    the number of stages or retries."""
    run = get_run(run_id)
    run.stage_list = list(run.stages.prefetch_related("model_usage").order_by("stage_order"))
    run.question_list = list(run.questions.select_related("answered_by"))
    run.lineage = run_lineage(run)
    run.ancestor_ids = ancestor_ids(run, {m.pk: m.parent_run_id for m, _ in run.lineage.runs})
    return run


def ancestor_ids(run: PipelineRun, parents: dict | None = None) -> list:
    """The runs `run` descends from, root first; `parents` ({run: its parent}) when the
    lineage was read already, else one query."""
    if parents is None:
        root_id = run.root_run_id or run.pk
        parents = dict(
            PipelineRun.objects.filter(runs_in_lineage(root_id)).values_list("pk", "parent_run_id")
        )
    ancestors, parent = [], run.parent_run_id
    while parent is not None and parent not in ancestors:
        ancestors.append(parent)
        parent = parents.get(parent)
    return ancestors[::-1]


@dataclass(frozen=True)
class ThreadCheckpoint:
    """One checkpoint of a run's thread, with the executed stage whose end saved it."""

    id: str
    parent_id: str | None
    step: int | None
    source: str
    next: list[str]
    created_at: datetime | None
    stage: StageExecution | None
    values: Any

    @cached_property
    def state(self) -> dict:
        """The state at the checkpoint as a JSON object."""
        return (
            to_json(self.values)
            if isinstance(self.values, dict)
            else {"value": to_json(self.values)}
        )


def thread_checkpoints(
    run: PipelineRun, snapshots: list["StateSnapshot"]
) -> list[ThreadCheckpoint]:
    """LangGraph's snapshots of the run's thread as ThreadCheckpoints (one query)."""
    stages = run.stages.executed().exclude(checkpoint_id="")
    written_by = {
        stage.checkpoint_id: stage
        for stage in stages.only("run_id", "checkpoint_id", "stage_order", "stage_name")
    }
    found = []
    for snapshot in snapshots:
        checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
        parent = snapshot.parent_config
        metadata = snapshot.metadata or {}
        found.append(
            ThreadCheckpoint(
                id=checkpoint_id,
                parent_id=parent["configurable"]["checkpoint_id"] if parent else None,
                step=metadata.get("step"),
                source=metadata.get("source", ""),
                next=list(snapshot.next),
                created_at=datetime.fromisoformat(snapshot.created_at)
                if snapshot.created_at
                else None,
                stage=written_by.get(checkpoint_id),
                values=snapshot.values,
            )
        )
    return found


def thread_history(run: PipelineRun, limit: int | None = None) -> list[ThreadCheckpoint]:
    """The run's own thread's checkpoints, newest first. A retry's thread starts at the
    checkpoint it was forked from; earlier ones are on its parent's thread."""
    history = compiled_graph(run.graph).get_state_history(
        checkpoint_config(run.thread_id), limit=limit
    )
    return thread_checkpoints(run, list(history))
