"""Runs: start one, list and filter them, read one with its stages, checkpoints and state."""

import json
from typing import Annotated
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.pagination import PageNumberPagination, paginate
from ninja.responses import NinjaJSONEncoder

from observability.auth import ApiError, require_perm
from observability.errors import errors, status_for
from observability.idempotency import IdempotencyKey, idempotent
from observability.openapi import links, run_links
from observability.schemas import (
    CheckpointOut,
    CheckpointStateOut,
    RunCreateIn,
    RunDetailOut,
    RunFilter,
    RunListItemOut,
    StageDetailOut,
    StageOut,
    run_detail_payload,
)
from pipeline import services
from pipeline.forking import checkpoint_config, graph_saver
from pipeline.graphs import compiled_graph
from pipeline.models import StageExecution
from pipeline.selectors import (
    ThreadCheckpoint,
    api_runs,
    get_run,
    get_run_detail,
    thread_checkpoints,
    thread_history,
)
from pipeline.snapshots import to_json

router = Router(tags=["runs"])

# Ids and orders beyond what their columns hold are refused, not sent to the database.
StageId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000  # keeps offsets within what databases accept


def run_detail_json(run_id) -> dict:
    """The run as the API renders it (kept verbatim for Idempotency-Key replays)."""
    payload = RunDetailOut.model_validate(run_detail_payload(get_run_detail(str(run_id))))
    return json.loads(json.dumps(payload.model_dump(), cls=NinjaJSONEncoder))


@router.post(
    "/runs", response={201: RunDetailOut, **errors(409, body=True)}, openapi_extra=run_links(201)
)
def create_run(
    request: HttpRequest,
    payload: RunCreateIn,
    idempotency_key: IdempotencyKey = None,
):
    """Start a run of a graph. The input is validated against the graph's input schema before
    anything is queued. With an `Idempotency-Key`, sending the same request again returns the
    first response and starts nothing."""
    who = require_perm(request, "start")

    def start() -> tuple[int, dict]:
        run = services.start_run(
            graph=payload.graph,
            input=payload.input,
            context=payload.context,
            actor=who.actor,
            reason=payload.reason,
        )
        return 201, run_detail_json(run.pk)

    return idempotent(
        request, who, idempotency_key, payload.model_dump(mode="json"), start, status_for
    )


class RunPagination(PageNumberPagination):
    """Pages by id first, then annotates only the rows of the page: Postgres would compute
    every row's progress subqueries for the rows an OFFSET skips, too."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int | None = Field(None, ge=1)

    def paginate_queryset(self, queryset, pagination, request, **params):
        size = self._get_page_size(pagination.page_size)
        offset = (pagination.page - 1) * size
        ids = list(queryset.values_list("pk", flat=True)[offset : offset + size])
        rows = {run.pk: run for run in queryset.filter(pk__in=ids)} if ids else {}
        return {"items": [rows[pk] for pk in ids if pk in rows], "count": queryset.count()}


@router.get(
    "/runs",
    response={200: list[RunListItemOut], **errors(422)},
    openapi_extra=run_links(200, "$response.body#/items/0/id"),
)
@paginate(RunPagination, page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
def list_runs(request: HttpRequest, filters: Query[RunFilter]):
    """Runs, newest first (ties by id), filtered; `page_size` is at most 100."""
    return filters.filter(api_runs())


@router.get(
    "/runs/{uuid:run_id}",
    response={200: RunDetailOut, **errors(404, 422)},
    openapi_extra=links(
        200,
        stage_detail={"run_id": "$request.path.run_id", "stage_id": "$response.body#/stages/0/id"},
    ),
)
def run_detail(request: HttpRequest, run_id: UUID):
    """One run: its stages, its retries, its whole lineage and totals (time, tokens, cost)."""
    return run_detail_payload(get_run_detail(str(run_id)))


@router.get(
    "/runs/{uuid:run_id}/stages",
    response={200: list[StageOut], **errors(404, 422)},
    openapi_extra=links(
        200, stage_detail={"run_id": "$request.path.run_id", "stage_id": "$response.body#/0/id"}
    ),
)
def run_stages(request: HttpRequest, run_id: UUID):
    """The run's stage executions in order (a stage that ran twice has two)."""
    run = get_run(str(run_id))
    return list(run.stages.prefetch_related("model_usage").order_by("stage_order"))


@router.get(
    "/runs/{uuid:run_id}/stages/{int:stage_id}", response={200: StageDetailOut, **errors(404, 422)}
)
def stage_detail(request: HttpRequest, run_id: UUID, stage_id: StageId):
    """One stage execution with its input and output snapshots, error and traceback."""
    stage = StageExecution.objects.filter(run_id=run_id, pk=stage_id).first()
    if stage is None:
        get_run(str(run_id))
        raise ApiError(404, f"Run {run_id} has no stage execution {stage_id}.", "stage_not_found")
    return stage


def _checkpoint(checkpoint: ThreadCheckpoint) -> dict:
    return {
        "checkpoint_id": checkpoint.id,
        "parent_checkpoint_id": checkpoint.parent_id,
        "step": checkpoint.step,
        "source": checkpoint.source or None,
        "next": checkpoint.next,
        "created_at": checkpoint.created_at,
        "written_by_stage_id": checkpoint.stage.pk if checkpoint.stage else None,
    }


@router.get(
    "/runs/{uuid:run_id}/checkpoints",
    response={200: list[CheckpointOut], **errors(404, 422)},
    openapi_extra=links(
        200,
        checkpoint_state={
            "run_id": "$request.path.run_id",
            "checkpoint_id": "$response.body#/0/checkpoint_id",
        },
    ),
)
def run_checkpoints(request: HttpRequest, run_id: UUID):
    """LangGraph's state history of the run's own thread, newest first. A retry's thread starts
    at the checkpoint it was forked from; earlier ones are on its parent's thread."""
    return [_checkpoint(checkpoint) for checkpoint in thread_history(get_run(str(run_id)))]


@router.get(
    "/runs/{uuid:run_id}/checkpoints/{checkpoint_id}",
    response={200: CheckpointStateOut, **errors(404, 422)},
)
def checkpoint_state(request: HttpRequest, run_id: UUID, checkpoint_id: str):
    """The graph state at one checkpoint of the run's thread, and the tasks due after it."""
    run = get_run(str(run_id))
    config = checkpoint_config(run.thread_id, checkpoint_id)
    if "\x00" in checkpoint_id or graph_saver(run.graph).get_tuple(config) is None:
        raise ApiError(
            404,
            f"Run {run_id} has no checkpoint {checkpoint_id!r} on its thread.",
            "checkpoint_not_found",
        )
    snapshot = compiled_graph(run.graph).get_state(config)
    [checkpoint] = thread_checkpoints(run, [snapshot])
    return Status(
        200,
        {
            **_checkpoint(checkpoint),
            "values": to_json(snapshot.values),
            "tasks": [
                {
                    "id": task.id,
                    "name": task.name,
                    "error": repr(task.error) if task.error is not None else None,
                }
                for task in snapshot.tasks
            ],
        },
    )
