"""The JSON API (django-ninja). Endpoints parse, authorize, call pipeline services, render."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import SessionAuthIsStaff

from observability.schemas import ErrorOut, RetryIn, RetryPlanOut, RunDetailOut
from pipeline import services
from pipeline.exceptions import (
    Conflict,
    InvalidInput,
    PipelineError,
    RunNotFound,
    StageNotFound,
    UnknownGraph,
)
from pipeline.models import Surface
from pipeline.selectors import get_run

api = NinjaAPI(
    title="gamed-console API",
    version="1",
    description="Runs of LangGraph pipelines: start, inspect, retry from a stage.",
    urls_namespace="api",
    auth=SessionAuthIsStaff(),
    docs_decorator=staff_member_required,
)

STATUS_FOR = [
    ((RunNotFound, StageNotFound), 404),
    ((Conflict,), 409),
    ((InvalidInput, UnknownGraph), 422),
]
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


@api.exception_handler(PipelineError)
def pipeline_error(request: HttpRequest, exc: PipelineError):
    status = next((code for kinds, code in STATUS_FOR if isinstance(exc, kinds)), 400)
    return api.create_response(
        request, {"detail": exc.message, "code": exc.code, **exc.details}, status=status
    )


@api.exception_handler(NinjaValidationError)
def invalid_request(request: HttpRequest, exc: NinjaValidationError):
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors
    )
    return api.create_response(
        request, {"detail": problems or "invalid request", "code": "invalid_request"}, status=422
    )


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError):
    return api.create_response(
        request,
        {"detail": "Authentication required: a staff session.", "code": "unauthorized"},
        status=401,
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError):
    code = {403: "forbidden", 404: "not_found"}.get(exc.status_code, "error")
    return api.create_response(request, {"detail": str(exc), "code": code}, status=exc.status_code)


def require_perm(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(f"pipeline.{perm}_pipelinerun"):
        raise HttpError(403, f"You do not have permission to {perm} runs.")


@api.get("/runs/{run_id}", response={200: RunDetailOut, **ERRORS}, tags=["runs"])
def run_detail(request: HttpRequest, run_id: str):
    """One run with its stages."""
    return get_run(run_id)


@api.post(
    "/runs/{run_id}/retry",
    response={201: RunDetailOut, 200: RetryPlanOut, **ERRORS},
    tags=["actions"],
)
def retry(request: HttpRequest, run_id: str, payload: RetryIn):
    """Retry a finished run from a stage: a new run resumes from the checkpoint before it.

    With `dry_run` nothing is created and the plan is returned (200).
    """
    require_perm(request, "retry")
    run = get_run(run_id)
    target = {
        "from_stage": payload.from_stage,
        "stage_execution_id": payload.stage_execution_id,
        "state_patch": payload.state_patch,
    }
    if payload.dry_run:
        return Status(200, services.plan_retry(run=run, **target).to_dict())
    new = services.retry_run(
        run=run, requested_by=request.user, via=Surface.API, reason=payload.reason, **target
    )
    return Status(201, get_run(str(new.pk)))
