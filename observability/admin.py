from django.contrib import admin
from django.utils.html import format_html

from pipeline.models import NodeInvocation, PipelineRun, StageExecution
from pipeline.selectors import runs_with_progress


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs and stages are written by the engine only; admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdmin):
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

    def get_queryset(self, request):
        return runs_with_progress()

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


@admin.register(StageExecution)
class StageExecutionAdmin(ReadOnlyAdmin):
    list_display = ["stage_name", "run_link", "stage_order", "status", "duration_ms", "started_at"]
    list_filter = ["status", "stage_name"]
    search_fields = ["stage_name", "error_message", "run__id", "checkpoint_id"]
    list_select_related = ["run"]

    @admin.display(description="run", ordering="run")
    def run_link(self, stage):
        return format_html('<a href="{}">{}</a>', stage.run.admin_path, stage.run.short_id)


@admin.register(NodeInvocation)
class NodeInvocationAdmin(ReadOnlyAdmin):
    list_display = ["stage_name", "run", "outcome", "created_at"]
    list_filter = ["outcome", "stage_name"]
    list_select_related = ["run"]
