"""Every write to runs goes through here; admin, API and commands call these functions."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_q.tasks import async_task

from pipeline.graphs import subject_of, validate_input
from pipeline.models import PipelineRun, Surface


def enqueue_run(run: PipelineRun) -> None:
    async_task(
        "pipeline.tasks.execute_run",
        str(run.pk),
        task_name=f"{run.graph} run {run.short_id}",
        group=run.graph,
    )


def start_run(
    *,
    graph: str,
    input: dict,
    requested_by: AbstractBaseUser | None = None,
    via: Surface = Surface.SYSTEM,
    reason: str = "",
) -> PipelineRun:
    """Validate `input` against the graph's schema, record a pending run, queue it."""
    data = validate_input(graph, input)
    with transaction.atomic():
        run = PipelineRun.objects.create(
            graph=graph,
            input=data,
            subject=subject_of(graph, data),
            requested_by=requested_by,
            requested_via=via,
            reason=reason,
        )
        transaction.on_commit(lambda: enqueue_run(run))
    return run
