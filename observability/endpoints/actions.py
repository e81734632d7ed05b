"""What operators do to runs: retry from a stage, answer, cancel, resume, rerun, retry many at
once."""

from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Status

from observability.auth import require_perm
from observability.endpoints.runs import run_detail_json
from observability.errors import errors, status_for
from observability.idempotency import IdempotencyKey, idempotent
from observability.openapi import run_links
from observability.schemas import (
    ActionIn,
    AnswerIn,
    BulkRetryIn,
    BulkRetryOut,
    RetryIn,
    RetryPlanOut,
    RunDetailOut,
)
from pipeline import services
from pipeline.selectors import bulk_retry_candidates, get_run

router = Router(tags=["actions"])


@router.post(
    "/runs/{uuid:run_id}/retry",
    openapi_extra=run_links(201),
    response={201: RunDetailOut, 200: RetryPlanOut, **errors(404, 409, body=True)},
)
def retry(
    request: HttpRequest,
    run_id: UUID,
    payload: RetryIn,
    idempotency_key: IdempotencyKey = None,
):
    """Retry a finished run from a stage: a new run resumes from the checkpoint before it.

    With `dry_run` nothing is created and the plan is returned (200).
    """
    who = require_perm(request, "retry")
    run = get_run(str(run_id))
    target = {
        "from_stage": payload.from_stage,
        "stage_execution_id": payload.stage_execution_id,
        "state_patch": payload.state_patch,
        "context": payload.context,
    }
    if payload.dry_run:
        return Status(200, services.plan_retry(run=run, **target).to_dict())

    def create() -> tuple[int, dict]:
        new = services.retry_run(
            run=run,
            replay_answers=payload.replay_answers,
            actor=who.actor,
            reason=payload.reason,
            **target,
        )
        return 201, run_detail_json(new.pk)

    body = {"run_id": str(run_id), **payload.model_dump(mode="json")}
    return idempotent(request, who, idempotency_key, body, create, status_for)


def _act(request: HttpRequest, permission: str, service, run_id: UUID, payload: ActionIn):
    who = require_perm(request, permission)
    return service(run=get_run(str(run_id)), actor=who.actor, reason=payload.reason)


@router.post(
    "/runs/{uuid:run_id}/cancel",
    response={200: RunDetailOut, **errors(404, 409, body=True)},
    openapi_extra=run_links(200, "$request.path.run_id"),
)
def cancel(request: HttpRequest, run_id: UUID, payload: ActionIn):
    """Cancel a run: a pending or interrupted one at once, a running one at its next stage
    boundary (`cancel_requested` is set until then)."""
    _act(request, "cancel", services.cancel_run, run_id, payload)
    return run_detail_json(run_id)


@router.post(
    "/runs/{uuid:run_id}/resume",
    response={200: RunDetailOut, **errors(404, 409, body=True)},
    openapi_extra=run_links(200, "$request.path.run_id"),
)
def resume(request: HttpRequest, run_id: UUID, payload: ActionIn):
    """Resume an interrupted or cancelled run in place, from its latest checkpoint."""
    _act(request, "resume", services.resume_run, run_id, payload)
    return run_detail_json(run_id)


@router.post(
    "/runs/{uuid:run_id}/answer",
    response={200: RunDetailOut, **errors(404, 409, body=True)},
    openapi_extra=run_links(200, "$request.path.run_id"),
)
def answer(
    request: HttpRequest,
    run_id: UUID,
    payload: AnswerIn,
    idempotency_key: IdempotencyKey = None,
):
    """Answer a question a waiting run asks (`interrupt()` in a node): `value` is any JSON;
    name the question by `interrupt_id` when the run asks several. Once every question is
    answered the run continues; the stage that asked runs again and receives the answer.
    409 when the run is not waiting or asks no such question."""
    who = require_perm(request, "answer")
    run = get_run(str(run_id))

    def give() -> tuple[int, dict]:
        services.answer_run(
            run=run,
            value=payload.value,
            interrupt_id=payload.interrupt_id,
            actor=who.actor,
            reason=payload.reason,
        )
        return 200, run_detail_json(run.pk)

    body = {"run_id": str(run_id), **payload.model_dump(mode="json")}
    return idempotent(request, who, idempotency_key, body, give, status_for)


@router.post(
    "/runs/{uuid:run_id}/rerun",
    response={201: RunDetailOut, **errors(404, 409, body=True)},
    openapi_extra=run_links(201),
)
def rerun(request: HttpRequest, run_id: UUID, payload: ActionIn):
    """Run the graph again from the run's original input, as a new run in its lineage."""
    new = _act(request, "retry", services.rerun_run, run_id, payload)
    return Status(201, run_detail_json(new.pk))


@router.post(
    "/runs/bulk-retry",
    response={200: BulkRetryOut, **errors(body=True)},
    openapi_extra=run_links(200, "$response.body#/retried/0/new_run_id"),
)
def bulk_retry(request: HttpRequest, payload: BulkRetryIn):
    """Retry the runs a filter selects (by default: failed runs not retried yet), newest first,
    at most `limit` (50) per call, each from its failed stage or from `from_stage`. Runs that
    cannot be retried are skipped with the reason; for the `remaining` ones, call again with
    `created_before` set to `next_created_before`."""
    who = require_perm(request, "retry")
    runs = bulk_retry_candidates(
        **payload.model_dump(
            include={"status", "graph", "failed_stage", "created_after", "created_before"}
        )
    )
    matched = runs.count()
    page = list(runs[: payload.limit])
    result = services.retry_failed_runs(
        runs=page, from_stage=payload.from_stage, actor=who.actor, reason=payload.reason
    )
    retried = [
        {"run_id": new.parent_run_id, "new_run_id": new.pk, "from_stage": new.retry_from_stage}
        for new in result.retried
    ]
    skipped = [
        {"run_id": run.pk, "code": exc.code, "detail": exc.message} for run, exc in result.skipped
    ]
    remaining = matched - len(page)
    return {
        "matched": matched,
        "retried": retried,
        "skipped": skipped,
        "remaining": remaining,
        "next_created_before": page[-1].created_at.isoformat() if remaining else None,
    }
