import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from observability.forms import RetryForm
from pipeline.exceptions import PipelineError, RunNotFound
from pipeline.models import NodeInvocation, PipelineRun, StageExecution, Surface
from pipeline.selectors import get_run, latest_failed_stage, runs_with_progress
from pipeline.services import plan_retry, retry_run


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs and stages are written by the engine only; admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RetryAdminMixin:
    """Permission check and the one-message report shared by the retry actions."""

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("pipeline.retry_pipelinerun")

    def report_retries(
        self, request, retried: list[PipelineRun], skipped: list[tuple[str, str]]
    ) -> None:
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


class StageInline(admin.TabularInline):
    model = StageExecution
    fk_name = "run"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "stage_order",
        "stage_name",
        "status",
        "duration_ms",
        "checkpoint_id",
        "parent_checkpoint_id",
        "error_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _run_link(run: PipelineRun | None) -> str:
    if run is None:
        return "-"
    return format_html('<a href="{}">{}</a>', run.admin_path, run)


@admin.register(PipelineRun)
class PipelineRunAdmin(RetryAdminMixin, ReadOnlyAdmin):
    list_display = [
        "short_id",
        "graph",
        "status",
        "subject",
        "created_at",
        "duration_display",
        "progress",
        "failed_stage",
        "retry_depth",
    ]
    list_filter = ["status", "graph", "retry_depth", "requested_via"]
    search_fields = ["id", "subject", "error_message"]
    date_hierarchy = "created_at"
    list_select_related = ["requested_by"]
    inlines = [StageInline]
    actions = ["retry_from_failed_stage"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "graph",
                    "status",
                    "subject",
                    "input",
                    "output",
                    "error_message",
                    "error_traceback",
                    "created_at",
                    "started_at",
                    "finished_at",
                ]
            },
        ),
        (
            "Lineage",
            {
                "fields": [
                    "parent_run_link",
                    "root_run_link",
                    "retries",
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
                "fields": ["thread_id", "worker", "heartbeat_at", "attempts", "cancel_requested"],
                "classes": ["collapse"],
            },
        ),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def get_queryset(self, request):
        return runs_with_progress()

    def get_urls(self):
        retry = path(
            "<uuid:run_id>/retry/",
            self.admin_site.admin_view(self.retry_view),
            name="pipeline_pipelinerun_retry",
        )
        return [retry, *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.is_terminal and self.has_retry_permission(request):
            context["retry_url"] = reverse("admin:pipeline_pipelinerun_retry", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def retry_view(self, request, run_id):
        if not self.has_retry_permission(request):
            raise PermissionDenied
        try:
            run = get_run(str(run_id))
        except RunNotFound as error:
            raise Http404(error.message) from None
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
            }
            try:
                if "_confirm" in request.POST:
                    retry = retry_run(
                        **choice,
                        requested_by=request.user,
                        via=Surface.ADMIN,
                        reason=form.cleaned_data["reason"],
                    )
                    self.message_user(
                        request,
                        f"Retrying {run} from {retry.retry_from_stage}: new run {retry.short_id}.",
                        messages.SUCCESS,
                    )
                    return redirect(retry.admin_path)
                plan = plan_retry(**choice)
            except PipelineError as error:
                form.add_error(None, error.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Retry {run} from a stage",
            "run": run,
            "form": form,
            "plan": plan,
            "state_diff": [
                (key, json.dumps(change["before"]), json.dumps(change["after"]))
                for key, change in (plan.state_diff.items() if plan else [])
            ],
        }
        return TemplateResponse(request, "admin/pipeline/pipelinerun/retry.html", context)

    @admin.action(permissions=["retry"], description="Retry selected runs from their failed stage")
    def retry_from_failed_stage(self, request, queryset):
        retried, skipped = [], []
        for run in queryset:
            failed = latest_failed_stage(run)
            if failed is None:
                skipped.append((run.short_id, "no failed stage"))
                continue
            try:
                retried.append(
                    retry_run(
                        run=run,
                        stage_execution_id=failed.pk,
                        requested_by=request.user,
                        via=Surface.ADMIN,
                    )
                )
            except PipelineError as error:
                skipped.append((run.short_id, error.message))
        self.report_retries(request, retried, skipped)

    @admin.display(description="id", ordering="id")
    def short_id(self, run):
        return run.short_id

    @admin.display(description="duration")
    def duration_display(self, run):
        return str(run.duration).split(".")[0] if run.duration else "-"

    @admin.display(description="stages done")
    def progress(self, run):
        return f"{run.stages_done}/{run.stage_count}"

    @admin.display(description="failed stage")
    def failed_stage(self, run):
        return run.failed_stage or "-"

    @admin.display(description="parent run")
    def parent_run_link(self, run):
        return _run_link(run.parent_run)

    @admin.display(description="root run")
    def root_run_link(self, run):
        return _run_link(run.root_run)

    @admin.display(description="retries of this run")
    def retries(self, run):
        children = run.children.order_by("created_at")
        if not children:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> from {} ({})',
            ((c.admin_path, c.short_id, c.retry_from_stage, c.status) for c in children),
        )


@admin.register(StageExecution)
class StageExecutionAdmin(RetryAdminMixin, ReadOnlyAdmin):
    list_display = ["stage_name", "run_link", "stage_order", "status", "duration_ms", "started_at"]
    list_filter = ["status", "stage_name"]
    search_fields = ["stage_name", "error_message", "run__id", "checkpoint_id"]
    list_select_related = ["run"]
    actions = ["retry_from_this_stage"]

    @admin.display(description="run", ordering="run")
    def run_link(self, stage):
        return format_html('<a href="{}">{}</a>', stage.run.admin_path, stage.run.short_id)

    @admin.action(permissions=["retry"], description="Retry from this stage")
    def retry_from_this_stage(self, request, queryset):
        retried, skipped = [], []
        for row in queryset.select_related("run"):
            try:
                retried.append(
                    retry_run(
                        run=row.run,
                        stage_execution_id=row.pk,
                        requested_by=request.user,
                        via=Surface.ADMIN,
                    )
                )
            except PipelineError as error:
                skipped.append((f"{row} of run {row.run.short_id}", error.message))
        self.report_retries(request, retried, skipped)


@admin.register(NodeInvocation)
class NodeInvocationAdmin(ReadOnlyAdmin):
    list_display = ["stage_name", "run", "outcome", "created_at"]
    list_filter = ["outcome", "stage_name"]
    list_select_related = ["run"]
