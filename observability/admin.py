import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join, json_script
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from observability.forms import AnswerForm, ReasonForm, RetryForm, StartRunForm
from observability.permissions import can_view_runs
from observability.run_page import (
    build_timeline,
    draw_graph,
    layout_graph,
    run_log,
    stage_changes,
    stage_log_preview,
    stage_ms,
    state_difference,
)
from pipeline import services
from pipeline.exceptions import (
    GraphUnavailable,
    InvalidContext,
    InvalidInput,
    PipelineError,
    RunNotFound,
    UnknownGraph,
)
from pipeline.graphs import compiled_graph, graph_problems, registered_graphs, stage_paths
from pipeline.lib import format_duration, format_ms
from pipeline.models import (
    AuditRecord,
    NodeInvocation,
    PipelineRun,
    Question,
    RunStatus,
    StageExecution,
    StageStatus,
    Surface,
)
from pipeline.selectors import (
    ThreadCheckpoint,
    console_runs,
    expected_stage_count,
    failed_stage_names,
    get_run,
    lineage_usage,
    nested,
    run_lineage,
    run_outcomes_by_day,
    run_stages,
    run_totals,
    runs_failed_at,
    stage_statistics,
    stage_trend,
    thread_history,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs and stages are written by the engine only; admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def may_act_on_runs(request: HttpRequest, permission: str) -> bool:
    """An action answers with runs (a retry preview shows a run's state): like the API, it
    needs the view permission on runs besides its own."""
    return can_view_runs(request.user) and request.user.has_perm(
        f"pipeline.{permission}_pipelinerun"
    )


class RetryAdminMixin:
    """Permission check and the one-message report shared by the retry actions."""

    def has_retry_permission(self, request) -> bool:
        return may_act_on_runs(request, "retry")

    def report_retries(self, request, result: services.BulkRetry) -> None:
        retried = result.retried
        skipped = [(_label(item), error.message) for item, error in result.skipped]
        done = format_html_join(
            ", ",
            '{} from {} as <a href="{}">{}</a>',
            (
                (new.parent_run.short_id, new.retry_from_stage, new.admin_path, new.short_id)
                for new in retried
            ),
        )
        text = format_html(
            "Retried {} run{}{}{}.",
            len(retried),
            "" if len(retried) == 1 else "s",
            ": " if retried else "",
            done,
        )
        if skipped:
            text = format_html(
                "{} Skipped {}: {}.",
                text,
                len(skipped),
                format_html_join("; ", "{} ({})", skipped),
            )
        level = messages.WARNING if skipped else messages.SUCCESS
        self.message_user(request, text, level)


def _run_link(run: PipelineRun | None) -> str:
    if run is None:
        return "-"
    return format_html('<a href="{}">{}</a>', run.admin_path, run)


def status_badge(status: str) -> str:
    return format_html('<span class="run-status status-{}">{}</span>', status, status)


class FailedStageFilter(admin.SimpleListFilter):
    title = "failed stage"
    parameter_name = "failed_stage"

    def lookups(self, request, model_admin):
        return [(name, name) for name in failed_stage_names()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(runs_failed_at(self.value()))
        return queryset


class RecoveryFilter(admin.SimpleListFilter):
    """Failed runs a later run of their lineage made good, or the ones that still need work."""

    title = "failure recovery"
    parameter_name = "recovery"

    def lookups(self, request, model_admin):
        return [("unrecovered", "Unrecovered failures"), ("recovered", "Recovered failures")]

    def queryset(self, request, queryset):
        if self.value() == "unrecovered":
            return queryset.unrecovered_failures()
        if self.value() == "recovered":
            return queryset.recovered_failures()
        return queryset


@dataclass
class RunAction:
    """A button in the run page's object tools, and the admin view behind it."""

    name: str
    label: str
    permission: str
    applies: str  # the PipelineRun property that says whether the run is in a state for it
    title: str
    explanation: str
    confirm: str

    def applies_to(self, run: PipelineRun) -> bool:
        return getattr(run, self.applies)


RUN_ACTIONS = {
    action.name: action
    for action in [
        RunAction(
            name="cancel",
            label="Cancel",
            permission="cancel",
            applies="can_cancel",
            title="Cancel {run}",
            explanation=(
                "A pending or interrupted run will never start. A running run stops at its next "
                "stage boundary and ends cancelled; finished stages and their checkpoints stay, "
                "so it can be resumed or retried later."
            ),
            confirm="Cancel the run",
        ),
        RunAction(
            name="resume",
            label="Resume",
            permission="resume",
            applies="can_resume",
            title="Resume {run}",
            explanation=(
                "The same run continues on its own thread from its latest checkpoint: stages "
                "that completed do not run again; the stage that was cut short runs again."
            ),
            confirm="Resume the run",
        ),
        RunAction(
            name="rerun",
            label="Rerun from scratch",
            permission="retry",
            applies="can_retry",
            title="Rerun {run} from scratch",
            explanation=(
                "A new run of the same graph from this run's original input, recorded as a "
                "retry in this run's lineage. Every stage runs again; this run is not changed."
            ),
            confirm="Start the rerun",
        ),
    ]
}


@admin.register(PipelineRun)
class PipelineRunAdmin(RetryAdminMixin, ReadOnlyAdmin):
    list_display = [
        "short_id",
        "status_display",
        "subject_display",
        "started",
        "duration_display",
        "progress",
        "cost_display",
        "failed_stage",
        "retry_depth_display",
    ]
    list_display_links = ["short_id"]
    list_filter = [
        "status",
        RecoveryFilter,
        "graph",
        FailedStageFilter,
        "retry_depth",
        "requested_via",
    ]
    search_fields = ["id", "subject", "error_message"]
    date_hierarchy = "created_at"
    # A filtered page would count the whole table a second time just to print "of N total".
    show_full_result_count = False
    actions = ["retry_from_failed_stage"]
    fieldsets = [
        (
            "Run",
            {
                "fields": [
                    "graph",
                    "subject",
                    "input_tree",
                    "output_tree",
                    "created_at",
                    "started_at",
                    "finished_at",
                ]
            },
        ),
        (
            "Error",
            {"fields": ["error_message", "error_traceback"], "classes": ["collapse"]},
        ),
        (
            "Retry",
            {
                "fields": [
                    "parent_run_link",
                    "root_run_link",
                    "retry_from_stage",
                    "retry_depth",
                    "resume_mode",
                    "resume_note",
                ]
            },
        ),
        ("Requested", {"fields": ["requested_by", "requested_via", "reason"]}),
        (
            "Execution",
            {
                "fields": [
                    "thread_id",
                    "worker",
                    "heartbeat_at",
                    "lease_expires_at",
                    "attempts",
                    "auto_resumes",
                    "cancel_requested",
                ],
                "classes": ["collapse"],
            },
        ),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        return _with_live_flag(response, lambda run: run.is_active)

    def get_list_display(self, request):
        """The columns; for a user who may retry or cancel, the status cell also holds the
        run's Retry from failed stage and Cancel links (a column of their own would push
        the list wider than a desktop with admin's sidebar open)."""
        may_retry = self.has_retry_permission(request)
        may_cancel = self.has_run_permission(request, "cancel")
        if not (may_retry or may_cancel):
            return self.list_display

        @admin.display(description="status", ordering="status")
        def status_and_actions(run):
            links = []
            if may_retry and run.can_retry and run.failed_stage_id:
                url = reverse("admin:pipeline_pipelinerun_retry", args=[run.pk])
                links.append(
                    (f"{url}?stage={run.failed_stage_id}", "retry", "Retry from failed stage")
                )
            if may_cancel and run.can_cancel:
                url = reverse("admin:pipeline_pipelinerun_cancel", args=[run.pk])
                links.append((url, "cancel", "Cancel"))
            status = self.status_display(run)
            if not links:
                return status
            return format_html(
                '{}<span class="row-actions">{}</span>',
                status,
                format_html_join("", '<a href="{}" class="row-action row-action-{}">{}</a>', links),
            )

        return [
            status_and_actions if column == "status_display" else column
            for column in self.list_display
        ]

    def get_queryset(self, request):
        runs = console_runs()
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # The list shows none of the large JSON and text columns.
            runs = runs.defer("input", "output", "error_traceback", "resume_note")
        return runs

    def get_urls(self):
        def view(name: str, route: str, func):
            return path(
                route, self.admin_site.admin_view(func), name=f"pipeline_pipelinerun_{name}"
            )

        def action_view(action: RunAction):
            def run_action(request, run_id):
                return self.run_action_view(request, run_id, action)

            return run_action

        return [
            view("start", "start/", self.start_view),
            view("stats", "stats/", self.stats_view),
            view("inbox", "waiting/", self.inbox_view),
            view("retry", "<uuid:run_id>/retry/", self.retry_view),
            view("answer", "<uuid:run_id>/answer/", self.answer_view),
            view("live", "<uuid:run_id>/live/", self.live_view),
            view("checkpoints", "<uuid:run_id>/checkpoints/", self.checkpoints_view),
            *(
                view(name, f"<uuid:run_id>/{name}/", action_view(action))
                for name, action in RUN_ACTIONS.items()
            ),
            *super().get_urls(),
        ]

    # Permissions ---------------------------------------------------------------------------

    def has_run_permission(self, request: HttpRequest, permission: str) -> bool:
        return may_act_on_runs(request, permission)

    def run_buttons(self, request: HttpRequest, run: PipelineRun) -> list[dict]:
        """The object tools this user may use on this run in its current status."""
        buttons = []
        if run.can_retry and self.has_retry_permission(request):
            buttons.append(
                {
                    "name": "retry",
                    "label": "Retry from stage…",
                    "url": reverse("admin:pipeline_pipelinerun_retry", args=[run.pk]),
                }
            )
        for action in RUN_ACTIONS.values():
            if action.applies_to(run) and self.has_run_permission(request, action.permission):
                buttons.append(
                    {
                        "name": action.name,
                        "label": action.label,
                        "url": reverse(f"admin:pipeline_pipelinerun_{action.name}", args=[run.pk]),
                    }
                )
        return buttons

    def _run_or_404(self, run_id) -> PipelineRun:
        try:
            return get_run(str(run_id))
        except RunNotFound as error:
            raise Http404(error.message) from None

    def _context(self, request, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    # The run page --------------------------------------------------------------------------

    def live_context(self, run: PipelineRun) -> dict:
        """What changes while a run executes: progress, stage rows, timeline, graph colours."""
        now = timezone.now()
        stages = nested(list(run_stages(run)))
        return {
            "run": run,
            "run_duration": format_duration(run.duration),
            "stages_done": sum(1 for s in stages if s.is_done),
            "stage_count": expected_stage_count(
                run,
                sum(1 for s in stages if s.counts_in_progress(stages)),
                max(stages, key=lambda s: s.stage_order).stage_name if stages else None,
            ),
            "stage_rows": [self._stage_row(stage, now) for stage in stages],
            "usage": _usage(run, stages),
            "timeline": build_timeline(run, stages, now),
            "graph": _graph_drawing(run.graph, stages),
        }

    def console_context(self, request: HttpRequest, run: PipelineRun) -> dict:
        live = self.live_context(run)
        return {
            **live,
            "run_log": run_log([row["stage"] for row in live["stage_rows"]]),
            "checkpoints_url": reverse("admin:pipeline_pipelinerun_checkpoints", args=[run.pk]),
            "run_is_live": not run.is_terminal,
            "live_url": reverse("admin:pipeline_pipelinerun_live", args=[run.pk]),
            "run_buttons": self.run_buttons(request, run),
            "lineage": run_lineage(run),
            "audit_records": list(
                AuditRecord.objects.filter(run=run)
                .select_related("actor", "result_run")
                .order_by("at")
            ),
            "questions": list(run.questions.select_related("answered_by")),
            "can_answer": self.has_run_permission(request, "answer"),
            "next_url": run.admin_path,
        }

    def _stage_row(self, stage: StageExecution, now) -> dict:
        return {
            "stage": stage,
            "logs": stage_log_preview(stage),
            "duration": format_ms(stage_ms(stage, now)),
            "changes": stage_changes(stage),
            "input_json": _json(stage.input_snapshot),
            "output_json": _json(stage.output_snapshot),
            "final": stage.status != StageStatus.RUNNING,
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self.console_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def live_view(self, request, run_id):
        """JSON for the run page's poller: status, progress, and the parts that changed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = self._run_or_404(run_id)
        context = self.live_context(run)
        have = {part for part in request.GET.get("have", "").split(",") if part.isdigit()}
        stages = []
        for row in context["stage_rows"]:
            stage = row["stage"]
            known = str(stage.pk) in have and row["final"]
            stages.append(
                {
                    "id": stage.pk,
                    "order": stage.stage_order,
                    "name": stage.stage_name,
                    "status": stage.status,
                    "duration_ms": stage.duration_ms,
                    "started_at": stage.started_at,
                    "finished_at": stage.finished_at,
                    "checkpoint_id": stage.checkpoint_id,
                    "error_message": stage.error_message,
                    "html": None
                    if known
                    else render_to_string(
                        "admin/pipeline/pipelinerun/console/stage.html",
                        {"row": row, "usage": context["usage"]},
                        request,
                    ),
                }
            )
        return JsonResponse(
            {
                "id": str(run.pk),
                "status": run.status,
                "is_terminal": run.is_terminal,
                "cancel_requested": run.cancel_requested,
                "duration": context["run_duration"],
                "started": date_format(timezone.localtime(run.started_at), "DATETIME_FORMAT")
                if run.started_at
                else "not yet",
                "stages_done": context["stages_done"],
                "stage_count": context["stage_count"],
                "error_message": run.error_message,
                "stages": stages,
                "timeline_html": render_to_string(
                    "admin/pipeline/pipelinerun/console/timeline.html", context, request
                ),
                "graph_html": render_to_string(
                    "admin/pipeline/pipelinerun/console/graph.html", context, request
                ),
            }
        )

    CHECKPOINT_LIMIT = 200

    def checkpoints_view(self, request, run_id):
        """The run's thread in LangGraph's checkpointer: each checkpoint with the state at it,
        a diff between any two (?a=&b=), and between this retry and its parent (?parent=1)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = self._run_or_404(run_id)
        checkpoints, problem = _thread_history(run, self.CHECKPOINT_LIMIT)
        by_id = {entry.id: entry for entry in checkpoints}
        first, second = request.GET.get("a", ""), request.GET.get("b", "")
        compared = None
        if first or second:
            if first not in by_id or second not in by_id:
                return TemplateResponse(
                    request,
                    "admin/pipeline/pipelinerun/checkpoints.html",
                    self._context(
                        request,
                        title=f"Checkpoints of {run}",
                        run=run,
                        checkpoints=checkpoints,
                        problem=f"Run {run.short_id} has no such checkpoint on its thread.",
                    ),
                    status=404,
                )
            compared = {
                "before": by_id[first],
                "after": by_id[second],
                "changes": state_difference(by_id[first].state, by_id[second].state),
            }
        elif request.GET.get("parent") and run.parent_run_id:
            parent_history, _ = _thread_history(run.parent_run, 1)
            if checkpoints and parent_history:
                compared = {
                    "before": parent_history[0],
                    "after": checkpoints[0],
                    "parent": run.parent_run,
                    "changes": state_difference(parent_history[0].state, checkpoints[0].state),
                }
        context = self._context(
            request,
            title=f"Checkpoints of {run}",
            run=run,
            checkpoints=checkpoints,
            compared=compared,
            problem=problem,
            first=first,
            second=second,
        )
        return TemplateResponse(request, "admin/pipeline/pipelinerun/checkpoints.html", context)

    def history_view(self, request, object_id, extra_context=None):
        """A run's history is its audit trail: what operators did to it on every surface, and
        the action that created it. Admin's own change log stays empty, runs are not edited."""
        try:
            run_id = uuid.UUID(str(object_id))
        except ValueError:
            return super().history_view(request, object_id, extra_context)
        records = (
            AuditRecord.objects.filter(Q(run_id=run_id) | Q(result_run_id=run_id))
            .select_related("actor")
            .order_by("at", "pk")
        )
        return super().history_view(
            request, object_id, {**(extra_context or {}), "audit_records": list(records)}
        )

    # Actions on one run --------------------------------------------------------------------

    def retry_view(self, request, run_id):
        if not self.has_retry_permission(request):
            raise PermissionDenied
        run = self._run_or_404(run_id)
        stages = list(run.stages.order_by("stage_order"))
        form = RetryForm(
            request.POST if request.method == "POST" else None,
            stages=stages,
            preselect=request.GET.get("stage"),
        )
        plan = None
        if form.is_valid():
            choice = {
                "run": run,
                "stage_execution_id": form.cleaned_data["stage"],
                "state_patch": form.cleaned_data["state_patch"],
                "context": form.cleaned_data["context"],
            }
            replay = form.cleaned_data["replay_answers"]
            try:
                if "_confirm" in request.POST:
                    retry = services.retry_run(
                        **choice,
                        replay_answers=replay,
                        actor=_actor(request),
                        reason=form.cleaned_data["reason"],
                    )
                    self.message_user(
                        request,
                        f"Retrying {run} from {retry.retry_from_stage}: new run {retry.short_id}.",
                        messages.SUCCESS,
                    )
                    return redirect(retry.admin_path)
                plan = services.plan_retry(**choice)
                plan.replay_answers = replay
            except PipelineError as error:
                form.add_error(None, error.message)
        context = self._context(
            request,
            title=f"Retry {run} from a stage",
            run=run,
            form=form,
            plan=plan,
            state_diff=[
                (key, json.dumps(change["before"]), json.dumps(change["after"]))
                for key, change in (plan.state_diff.items() if plan else [])
            ],
        )
        return _form_page(request, "admin/pipeline/pipelinerun/retry.html", context, form)

    def run_action_view(self, request, run_id, action: RunAction):
        """Cancel, resume or rerun: a confirmation page (GET), then the service (POST)."""
        if not self.has_run_permission(request, action.permission):
            raise PermissionDenied
        run = self._run_or_404(run_id)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            service = getattr(services, f"{action.name}_run")
            try:
                result = service(run=run, actor=_actor(request), reason=form.cleaned_data["reason"])
            except PipelineError as error:
                self.message_user(request, error.message, messages.ERROR)
                return redirect(run.admin_path)
            self.message_user(request, _action_message(action.name, run, result), messages.SUCCESS)
            return redirect(result.admin_path)
        context = self._context(
            request,
            title=action.title.format(run=run),
            run=run,
            action=action,
            form=form,
            applicable=action.applies_to(run),
        )
        return _form_page(request, "admin/pipeline/pipelinerun/run_action.html", context, form)

    # Questions runs ask (interrupt()) ------------------------------------------------------

    def inbox_view(self, request):
        """Every open question of every waiting run, oldest first, each with its answer form."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        questions = list(Question.objects.open().select_related("run")[: self.INBOX_LIMIT + 1])
        context = self._context(
            request,
            title="Waiting for input",
            # New questions come from runs still executing; shown ones wait for an answer.
            list_is_live=bool(questions) or PipelineRun.objects.active().exists(),
            questions=questions[: self.INBOX_LIMIT],
            more=len(questions) > self.INBOX_LIMIT,
            can_answer=self.has_run_permission(request, "answer"),
            next_url=reverse("admin:pipeline_pipelinerun_inbox"),
        )
        return TemplateResponse(request, "admin/pipeline/pipelinerun/inbox.html", context)

    INBOX_LIMIT = 200

    def answer_view(self, request, run_id):
        if not self.has_run_permission(request, "answer"):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run_or_404(run_id)
        back = request.POST.get("next") or run.admin_path
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = run.admin_path
        form = AnswerForm(request.POST)
        if not form.is_valid():
            problems = " ".join(e for errors in form.errors.values() for e in errors)
            self.message_user(request, f"Not answered: {problems}", messages.ERROR)
            return redirect(back)
        try:
            run = services.answer_run(
                run=run,
                value=form.cleaned_data["value"],
                interrupt_id=form.cleaned_data["interrupt_id"],
                actor=_actor(request),
                reason=form.cleaned_data["reason"],
            )
        except PipelineError as error:
            self.message_user(request, f"Not answered: {error.message}", messages.ERROR)
            return redirect(back)
        outcome = "it still waits for other answers" if run.is_waiting else "it continues"
        self.message_user(request, f"Answered {run}: {outcome}.", messages.SUCCESS)
        return redirect(back)

    # Starting runs, statistics -------------------------------------------------------------

    def start_view(self, request):
        if not self.has_run_permission(request, "start"):
            raise PermissionDenied
        graphs = registered_graphs()
        form = StartRunForm(
            request.POST if request.method == "POST" else None,
            graphs=graphs,
            initial={"graph": request.GET.get("graph") or ("gamed" if "gamed" in graphs else "")},
        )
        if request.method == "POST" and form.is_valid():
            try:
                run = services.start_run(
                    graph=form.cleaned_data["graph"],
                    input=form.cleaned_data["input"],
                    context=form.cleaned_data["context"],
                    actor=_actor(request),
                    reason=form.cleaned_data["reason"],
                )
            except UnknownGraph as error:
                form.add_error("graph", error.message)
            except InvalidContext as error:
                form.add_error("context", error.message)
            except InvalidInput as error:
                form.add_error("input", error.message)
            except PipelineError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, f"Started {run}.", messages.SUCCESS)
                return redirect(run.admin_path)
        context = self._context(request, title="Start a run", form=form)
        return _form_page(request, "admin/pipeline/pipelinerun/start.html", context, form)

    STATS_WINDOWS = {"1": "last 24 hours", "7": "last 7 days", "30": "last 30 days", "all": "all"}

    def stats_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        window = request.GET.get("days", "30")
        if window not in self.STATS_WINDOWS:
            window = "30"
        since = None if window == "all" else timezone.now() - timedelta(days=int(window))
        outcomes = run_outcomes_by_day(days=14)
        trend = {name: _trend_bars(days) for name, days in stage_trend(days=14).items()}
        context = self._context(
            request,
            title="Stage statistics",
            window=window,
            windows=self.STATS_WINDOWS.items(),
            stats=[
                {
                    "stats": row,
                    "failure_rate": _percent(row.failure_rate),
                    "p50": format_ms(row.p50_ms),
                    "p95": format_ms(row.p95_ms),
                    "retry_success": _percent(row.retry_success_rate),
                    "trend": trend.get(row.stage_name, []),
                }
                for row in _in_pipeline_order(stage_statistics(since=since))
            ],
            outcomes=[(graph, _outcome_rows(days)) for graph, days in outcomes.items()],
            statuses=[s.value for s in RunStatus],
        )
        return TemplateResponse(request, "admin/pipeline/pipelinerun/stats.html", context)

    # List actions and columns --------------------------------------------------------------

    @admin.action(permissions=["retry"], description="Retry selected runs from their failed stage")
    def retry_from_failed_stage(self, request, queryset):
        result = services.retry_failed_runs(runs=queryset, actor=_actor(request))
        self.report_retries(request, result)

    @admin.display(description="id", ordering="id")
    def short_id(self, run):
        return run.short_id

    @admin.display(description="status", ordering="status")
    def status_display(self, run):
        if run.cancel_requested and not run.is_terminal:
            return format_html("{} <small>cancelling</small>", status_badge(run.status))
        if run.recovered_by_id:
            return format_html(
                '{} <small class="run-recovered" title="recovered {}">recovered by '
                '<a href="{}">{}</a></small>',
                status_badge(run.status),
                date_format(timezone.localtime(run.recovered_at), "DATETIME_FORMAT")
                if run.recovered_at
                else "",
                reverse("admin:pipeline_pipelinerun_change", args=[run.recovered_by_id]),
                str(run.recovered_by_id)[:8],
            )
        return status_badge(run.status)

    # The graph sits under the subject: a column of its own would push the list wider than a
    # desktop with admin's sidebar open, and the graph filter is beside the list.
    @admin.display(description="subject · graph", ordering="subject")
    def subject_display(self, run):
        if len(run.subject) <= 70:
            subject = run.subject
        else:
            subject = format_html('<span title="{}">{}…</span>', run.subject, run.subject[:68])
        return format_html('{}<br><small class="run-graph">{}</small>', subject, run.graph)

    @admin.display(description="started", ordering="started_at")
    def started(self, run):
        if run.started_at is None:
            return format_html("<small>queued {}</small>", _when(run.created_at))
        return _when(run.started_at)

    @admin.display(description="duration")
    def duration_display(self, run):
        return format_duration(run.duration)

    @admin.display(description="stages done")
    def progress(self, run):
        return f"{run.stages_done}/{expected_stage_count(run, run.stage_count, run.last_stage)}"

    @admin.display(description="cost", ordering="cost_usd")
    def cost_display(self, run):
        return "-" if run.cost_usd is None else f"${run.cost_usd:.4f}"

    @admin.display(description="failed stage", ordering="failed_stage")
    def failed_stage(self, run):
        if not run.failed_stage:
            return "-"
        # Long stage names may break after an underscore, so the column stays narrow.
        return format_html_join(
            mark_safe("_<wbr>"), "{}", ((part,) for part in run.failed_stage.split("_"))
        )

    @admin.display(description="retry depth", ordering="retry_depth")
    def retry_depth_display(self, run):
        if not run.parent_run_id:
            return run.retry_depth
        parent = reverse("admin:pipeline_pipelinerun_change", args=[run.parent_run_id])
        return format_html(
            '{}<br><small>of <a href="{}">{}</a></small>',
            run.retry_depth,
            parent,
            str(run.parent_run_id)[:8],
        )

    @admin.display(description="input")
    def input_tree(self, run):
        return _json_tree(run.input)

    @admin.display(description="output (final state)")
    def output_tree(self, run):
        return _json_tree(run.output)

    @admin.display(description="parent run")
    def parent_run_link(self, run):
        return _run_link(run.parent_run)

    @admin.display(description="root run")
    def root_run_link(self, run):
        return _run_link(run.root_run)


def _with_live_flag(response, is_live) -> object:
    """Tell the list's live script whether any row shown is still pending or running."""
    context = getattr(response, "context_data", None)
    if context and "cl" in context:
        context["list_is_live"] = any(is_live(row) for row in context["cl"].result_list)
    return response


def _form_page(request, template: str, context: dict, form) -> TemplateResponse:
    # A form sent back with errors is a refused request: 400, like the API's refusals.
    status = 400 if form.errors else 200
    return TemplateResponse(request, template, context, status=status)


def _when(moment) -> str:
    """Today's times as 10:01:03 UTC, older ones with their date; how long ago below."""
    local = timezone.localtime(moment)
    shown = "%H:%M:%S %Z" if local.date() == timezone.localdate() else "%Y-%m-%d %H:%M:%S %Z"
    return format_html(
        '<time datetime="{}" title="{}">{}</time><br><small class="age">{} ago</small>',
        local.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        local.strftime(shown),
        timesince(moment).split(",")[0],
    )


def _json_tree(value) -> str:
    """A JSON value the run page's script draws as a collapsible, searchable tree."""
    if value is None:
        return "-"
    return format_html('<div class="json-tree">{}</div>', json_script(value))


def _thread_history(run: PipelineRun, limit: int) -> tuple[list[ThreadCheckpoint], str]:
    """The run thread's checkpoints, newest first; or why they cannot be shown."""
    if run.checkpoints_pruned_at:
        return [], "Its checkpoints were pruned by retention."
    try:
        return thread_history(run, limit), ""
    except UnknownGraph:
        return [], f"Graph {run.graph!r} is no longer registered: its checkpoints cannot be read."
    except GraphUnavailable as error:
        return [], f"{error.message} Its checkpoints cannot be read."


def _in_pipeline_order(rows: list) -> list:
    """Stage statistics in the order the registered graphs declare their stages; stages no
    graph declares any more come last, by name."""
    order: dict[str, int] = {}
    broken = graph_problems()
    for graph in registered_graphs():
        if graph in broken:
            continue
        for stage in stage_paths(graph):
            order.setdefault(stage, len(order))
    return sorted(rows, key=lambda row: (order.get(row.stage_name, len(order)), row.stage_name))


def _trend_bars(days: list) -> list[dict]:
    """Per day: executions and failures, with bar heights (the executions that did not fail,
    and the failures) in percent of the busiest day."""
    busiest = max((executed for _, executed, _ in days), default=0) or 1
    return [
        {
            "day": day,
            "executed": executed,
            "failed": failed,
            "height": round((executed - failed) / busiest * 100),
            "failed_height": round(failed / busiest * 100),
        }
        for day, executed, failed in days
    ]


def _json(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _usage(run: PipelineRun, stages: list[StageExecution]) -> dict | None:
    """Token and cost totals of the run (and of its lineage, when it has retries), or None
    when no stage of the run reported any. A cost is None when no call had a price."""
    totals = run_totals(run, stages)
    if not totals.reports_usage:
        return None
    lineage = lineage_usage(run) if run.parent_run_id or run.children.exists() else None
    return {
        "model_calls": totals.model_calls,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
        "cost_usd": totals.cost_usd,
        "lineage": lineage,
    }


def _label(item: PipelineRun | StageExecution) -> str:
    if isinstance(item, StageExecution):
        return f"{item} of run {item.run.short_id}"
    return item.short_id


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor(user=request.user, via=Surface.ADMIN)


_layouts: dict = {}


def _graph_drawing(name: str, stages: list[StageExecution]):
    try:
        graph = compiled_graph(name)
    except (UnknownGraph, GraphUnavailable):
        return None
    key = (name, id(graph))
    if key not in _layouts:
        _layouts[key] = layout_graph(graph.get_graph())
    return draw_graph(_layouts[key], stages)


def _action_message(action: str, run: PipelineRun, result: PipelineRun) -> str:
    if action == "cancel":
        if result.status == RunStatus.CANCELLED:
            return f"Cancelled {run}."
        return f"Cancel requested for {run}: it stops at its next stage boundary."
    if action == "resume":
        return f"Resuming {run} from its latest checkpoint."
    return f"Rerunning {run} from scratch: new run {result.short_id}."


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _outcome_rows(days) -> list[dict]:
    rows = []
    for day, counts in days:
        total = sum(counts.values())
        rows.append(
            {
                "day": day,
                "total": total,
                "counts": [counts.get(status, "") for status in RunStatus],
                "segments": [
                    (status, counts[status], round(counts[status] / total * 100, 2))
                    for status in RunStatus
                    if counts.get(status)
                ],
            }
        )
    return rows


@admin.register(StageExecution)
class StageExecutionAdmin(RetryAdminMixin, ReadOnlyAdmin):
    list_display = [
        "stage_name",
        "run_link",
        "stage_order",
        "status_display",
        "duration_ms",
        "started_at",
    ]
    list_filter = ["status", "stage_name"]
    search_fields = ["stage_name", "error_message", "run__id", "checkpoint_id"]
    list_select_related = ["run"]
    actions = ["retry_from_this_stage"]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        return _with_live_flag(
            response, lambda stage: stage.status in (StageStatus.RUNNING, StageStatus.WAITING)
        )

    @admin.display(description="run", ordering="run")
    def run_link(self, stage):
        return format_html('<a href="{}">{}</a>', stage.run.admin_path, stage.run.short_id)

    @admin.display(description="status", ordering="status")
    def status_display(self, stage):
        return status_badge(stage.status)

    @admin.action(permissions=["retry"], description="Retry from this stage")
    def retry_from_this_stage(self, request, queryset):
        result = services.retry_from_stages(stages=queryset, actor=_actor(request))
        self.report_retries(request, result)


@admin.register(NodeInvocation)
class NodeInvocationAdmin(ReadOnlyAdmin):
    list_display = ["stage_name", "run", "outcome", "created_at"]
    list_filter = ["outcome", "stage_name"]
    list_select_related = ["run"]


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    """Every operator action from every surface. Nobody adds, edits or deletes a record here,
    superusers included: the audit trail is only written by the services."""

    list_display = ["at", "action", "via", "actor_display", "run_link", "result_link", "reason"]
    list_filter = [
        "action",
        "via",
        ("actor", admin.RelatedOnlyFieldListFilter),
        "at",
    ]
    search_fields = ["run__id", "result_run__id", "reason"]
    date_hierarchy = "at"
    list_select_related = ["actor"]
    actions = None
    fields = [
        "at",
        "action",
        "via",
        "actor",
        "actor_label",
        "run",
        "result_run",
        "reason",
        "details_json",
    ]
    readonly_fields = fields

    @admin.display(description="who", ordering="actor_label")
    def actor_display(self, record):
        return record.actor_label or (record.actor.get_username() if record.actor else "-")

    @admin.display(description="run", ordering="run")
    def run_link(self, record):
        return _id_link(record.run_id)

    @admin.display(description="produced run")
    def result_link(self, record):
        return _id_link(record.result_run_id)

    @admin.display(description="details")
    def details_json(self, record):
        return format_html("<pre>{}</pre>", _json(record.details))


def _id_link(run_id) -> str:
    if run_id is None:
        return "-"
    url = reverse("admin:pipeline_pipelinerun_change", args=[run_id])
    return format_html('<a href="{}">{}</a>', url, str(run_id)[:8])
