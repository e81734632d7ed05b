"""Reads the surfaces share: annotated querysets so lists cost a constant number of queries."""

from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from pipeline.exceptions import RunNotFound
from pipeline.models import PipelineRun, StageExecution, StageStatus


def runs_with_progress() -> QuerySet[PipelineRun]:
    failed_stage = StageExecution.objects.filter(
        run=OuterRef("pk"), status=StageStatus.FAILED
    ).order_by("-stage_order")
    return PipelineRun.objects.annotate(
        stage_count=Count("stages"),
        stages_done=Count(
            "stages", filter=Q(stages__status__in=[StageStatus.SUCCEEDED, StageStatus.REUSED])
        ),
        failed_stage=Subquery(failed_stage.values("stage_name")[:1]),
    )


def get_run(run_id: str) -> PipelineRun:
    try:
        return PipelineRun.objects.select_related("parent_run", "root_run", "requested_by").get(
            pk=run_id
        )
    except (PipelineRun.DoesNotExist, ValueError, ValidationError):
        raise RunNotFound(f"No run with id {run_id!r}.") from None


def find_run(prefix_or_id: str) -> PipelineRun:
    """A run by full id or by a unique prefix of it (as `runs` prints them)."""
    text = prefix_or_id.strip().lower()
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
