"""Prometheus metrics at `/metrics`, computed from the database at scrape time.

Runs execute in many worker processes on many hosts; each of them only ever writes to the
database, so counting there at scrape time is correct however many workers there are, needs no
multiprocess files, and survives restarts. A scrape costs a constant number of aggregate
queries, whatever the number of runs.
"""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from observability.auth import ApiKeyAuth, BadApiKey
from pipeline.models import (
    FINAL_RUN_STATUSES,
    AuditAction,
    AuditRecord,
    ModelUsage,
    PipelineRun,
    RunStatus,
    StageExecution,
    StageStatus,
)

# Upper bounds of the stage duration histogram, in seconds: no-op stages take milliseconds,
# model calls seconds to minutes.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def _bucket_key(bound: float) -> str:
    return f"le_{int(bound * 1000)}"


def _le(bound: float) -> str:
    return f"{bound:g}" if bound < 1 else f"{float(bound):.1f}"


class ConsoleCollector:
    """Yields every metric of the console; each call of `collect` reads the database anew."""

    def collect(self) -> Iterator[Metric]:
        yield from self._runs()
        yield from self._stages()
        yield from self._model_usage()
        yield from self._retries()
        yield from self._audited()
        yield self._queue_depth()

    def _runs(self) -> Iterator[Metric]:
        started = CounterMetricFamily(
            "gamed_runs_started",
            "Runs started (queued) by graph: new runs, retries and reruns.",
            labels=["graph"],
        )
        finished = CounterMetricFamily(
            "gamed_runs_finished",
            "Runs that ended for good, by graph and status (succeeded or failed: a run keeps "
            "these). Interruptions and cancels, which a resume undoes, are counted from the "
            "audit trail instead.",
            labels=["graph", "status"],
        )
        current = GaugeMetricFamily(
            "gamed_runs", "Runs now in each status, by graph.", labels=["graph", "status"]
        )
        heartbeat_age = GaugeMetricFamily(
            "gamed_oldest_running_heartbeat_age_seconds",
            "Seconds since the stalest running run's worker last renewed its lease (0: none "
            "running).",
        )
        waiting_age = GaugeMetricFamily(
            "gamed_oldest_waiting_run_age_seconds",
            "Seconds the longest-waiting run has waited for an operator's answer, by graph.",
            labels=["graph"],
        )
        rows = PipelineRun.objects.values("graph", "status").annotate(
            n=Count("id"),
            oldest=Min("heartbeat_at", filter=Q(status=RunStatus.RUNNING)),
            waiting_since=Min("waiting_since", filter=Q(status=RunStatus.WAITING)),
        )
        per_graph: dict[str, int] = {}
        oldest = None
        now = timezone.now()
        for row in rows.order_by("graph", "status"):
            graph, status, n = row["graph"], row["status"], row["n"]
            per_graph[graph] = per_graph.get(graph, 0) + n
            current.add_metric([graph, status], n)
            if status in FINAL_RUN_STATUSES:
                finished.add_metric([graph, status], n)
            if row["oldest"] is not None and (oldest is None or row["oldest"] < oldest):
                oldest = row["oldest"]
            if row["waiting_since"] is not None:
                waited = (now - row["waiting_since"]).total_seconds()
                waiting_age.add_metric([graph], max(waited, 0.0))
        for graph, n in per_graph.items():
            started.add_metric([graph], n)
        age = (now - oldest).total_seconds() if oldest else 0.0
        heartbeat_age.add_metric([], max(age, 0.0))
        yield from (started, finished, current, heartbeat_age, waiting_age)

    def _stages(self) -> Iterator[Metric]:
        durations = HistogramMetricFamily(
            "gamed_stage_duration_seconds",
            "Duration of stage executions that ended, by graph and stage (reused stages of "
            "retries excluded: they did not execute).",
            labels=["graph", "stage"],
        )
        failures = CounterMetricFamily(
            "gamed_stage_failures",
            "Stage executions that failed, by graph and stage.",
            labels=["graph", "stage"],
        )
        timed = Q(duration_ms__isnull=False)
        buckets = {
            _bucket_key(bound): Count("id", filter=Q(duration_ms__lte=int(bound * 1000)))
            for bound in DURATION_BUCKETS
        }
        rows = (
            StageExecution.objects.executed()
            .values("run__graph", "stage_name")
            .annotate(
                n=Count("id", filter=timed),
                total_ms=Sum("duration_ms", filter=timed),
                failed=Count("id", filter=Q(status=StageStatus.FAILED)),
                **buckets,
            )
            .order_by("run__graph", "stage_name")
        )
        for row in rows:
            labels = [row["run__graph"], row["stage_name"]]
            if row["n"]:
                cumulative = [(_le(b), row[_bucket_key(b)]) for b in DURATION_BUCKETS]
                durations.add_metric(
                    labels, [*cumulative, ("+Inf", row["n"])], (row["total_ms"] or 0) / 1000
                )
            failures.add_metric(labels, row["failed"])
        yield from (durations, failures)

    def _model_usage(self) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            "gamed_llm_tokens",
            "Tokens of chat model calls stages made, by graph, stage, model and type (input or "
            "output).",
            labels=["graph", "stage", "model", "type"],
        )
        cost = CounterMetricFamily(
            "gamed_llm_cost_usd",
            "What chat model calls cost in US dollars (GAMED_MODEL_PRICES; models without a "
            "price are not counted), by graph, stage and model.",
            labels=["graph", "stage", "model"],
        )
        calls = CounterMetricFamily(
            "gamed_llm_calls",
            "Chat model calls stages made, by graph, stage and model.",
            labels=["graph", "stage", "model"],
        )
        # Usage rows are only ever added, one per stage execution and model: sums only grow.
        rows = (
            ModelUsage.objects.values("stage__run__graph", "stage__stage_name", "model")
            .annotate(
                calls=Sum("calls"),
                input=Sum("input_tokens"),
                output=Sum("output_tokens"),
                cost=Sum("cost_usd"),
            )
            .order_by("stage__run__graph", "stage__stage_name", "model")
        )
        for row in rows:
            labels = [row["stage__run__graph"], row["stage__stage_name"], row["model"]]
            tokens.add_metric([*labels, "input"], row["input"])
            tokens.add_metric([*labels, "output"], row["output"])
            calls.add_metric(labels, row["calls"])
            if row["cost"] is not None:
                cost.add_metric(labels, float(row["cost"]))
        yield from (tokens, cost, calls)

    def _retries(self) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "gamed_retries",
            "Retries and reruns created, by graph and the stage they start from.",
            labels=["graph", "stage"],
        )
        finished = CounterMetricFamily(
            "gamed_retries_finished",
            "Retries and reruns that ended for good, by graph, stage and outcome (succeeded or "
            "failed).",
            labels=["graph", "stage", "outcome"],
        )
        rows = (
            PipelineRun.objects.filter(parent_run__isnull=False)
            .values("graph", "retry_from_stage", "status")
            .annotate(n=Count("id"))
            .order_by("graph", "retry_from_stage", "status")
        )
        created: dict[tuple[str, str], int] = {}
        for row in rows:
            labels = (row["graph"], row["retry_from_stage"])
            created[labels] = created.get(labels, 0) + row["n"]
            if row["status"] in FINAL_RUN_STATUSES:
                finished.add_metric([*labels, row["status"]], row["n"])
        for labels, n in created.items():
            retries.add_metric(list(labels), n)
        yield from (retries, finished)

    def _audited(self) -> Iterator[Metric]:
        interrupted = CounterMetricFamily(
            "gamed_runs_interrupted",
            "Runs the reaper interrupted because their worker stopped renewing the lease.",
            labels=["graph"],
        )
        resumed = CounterMetricFamily(
            "gamed_runs_resumed",
            "Resumes of interrupted or cancelled runs, by graph and surface (system: automatic).",
            labels=["graph", "via"],
        )
        cancels = CounterMetricFamily(
            "gamed_run_cancels",
            "Cancels operators asked for, by graph and surface.",
            labels=["graph", "via"],
        )
        answers = CounterMetricFamily(
            "gamed_answers",
            "Answers to questions runs asked (interrupt()), by graph and surface (system: a "
            "deadline's default or a replayed answer).",
            labels=["graph", "via"],
        )
        counted = {
            AuditAction.RESUME: resumed,
            AuditAction.CANCEL: cancels,
            AuditAction.ANSWER: answers,
        }
        rows = (
            AuditRecord.objects.filter(action__in=[AuditAction.REAP, *counted])
            .values("action", "run__graph", "via")
            .annotate(n=Count("id"))
            .order_by("action", "run__graph", "via")
        )
        for row in rows:
            graph = row["run__graph"] or ""
            if row["action"] == AuditAction.REAP:
                interrupted.add_metric([graph], row["n"])
            else:
                counted[row["action"]].add_metric([graph, row["via"]], row["n"])
        yield from (interrupted, resumed, cancels, answers)

    def _queue_depth(self) -> Metric:
        depth = GaugeMetricFamily(
            "gamed_queue_depth", "Tasks waiting on the django-q2 queue for a worker."
        )
        if Conf.ORM:
            # A task a worker took stays in the table, locked until it is acknowledged.
            size = (
                OrmQ.objects.using(Conf.ORM)
                .filter(key=Conf.CLUSTER_NAME, lock__lte=timezone.now())
                .count()
            )
        else:
            size = get_broker().queue_size()
        depth.add_metric([], size or 0)
        return depth


def render_metrics() -> bytes:
    """The metrics in Prometheus' text format, read from the database now."""
    registry = CollectorRegistry()
    registry.register(ConsoleCollector())
    return generate_latest(registry)


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _has_metrics_token(request: HttpRequest) -> bool:
    expected = settings.GAMED_METRICS_TOKEN
    presented = _bearer(request)
    return bool(expected and presented) and hmac.compare_digest(
        presented.encode(), expected.encode()
    )


def _has_api_key(request: HttpRequest) -> bool:
    """A valid API key; every scope may read."""
    try:
        return ApiKeyAuth()(request) is not None
    except BadApiKey:
        return False


def _refuse(status: int, detail: str) -> HttpResponse:
    response = HttpResponse(detail + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint: GAMED_METRICS_TOKEN as a bearer token, an API key (any
    scope), or a staff session."""
    user = request.user
    allowed = (
        _has_metrics_token(request) or (user.is_active and user.is_staff) or _has_api_key(request)
    )
    if not allowed:
        if user.is_authenticated:
            return _refuse(403, "Metrics need a staff account, an API key or the metrics token.")
        return _refuse(
            401, "Authentication required: Authorization: Bearer <metrics token or API key>."
        )
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
