"""The JSON API (django-ninja). Endpoints parse, authorize, call pipeline services, render.

Routers per resource live in `observability.endpoints`; errors are mapped here, once, to one
shape: `{"detail": ..., "code": ...}`.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from observability.auth import API_AUTH, ApiError, BadApiKey, docs_access, needs_view_permission
from observability.endpoints import actions, events, graphs, health, logs, runs
from observability.errors import status_for
from observability.middleware import too_large_detail
from pipeline.exceptions import PipelineError
from pipeline.lib import load_json

logger = logging.getLogger(__name__)


class JsonObjectParser(Parser):
    """Request bodies are JSON objects sent as application/json; anything else is refused
    before a schema could read it as `{}`."""

    def parse_body(self, request: HttpRequest) -> dict:
        if request.content_type != "application/json":
            raise ApiError(
                415,
                f"Send the body as application/json, not {request.content_type or 'untyped'}.",
                "unsupported_media_type",
            )
        try:
            body = load_json(request.body)
        except ValueError as exc:
            raise ApiError(422, f"The body is {exc}.", "invalid_request") from None
        if not isinstance(body, dict):
            raise ApiError(
                422,
                f"The body must be a JSON object ({{}} for no options), not {type(body).__name__}.",
                "invalid_request",
            )
        return body


class LocalSwagger(Swagger):
    """Swagger UI from django-ninja's own static files (in STATICFILES_DIRS), not a CDN.

    django-ninja picks its local template only when "ninja" is in INSTALLED_APPS, which it is
    not (see settings.NINJA_DIR); its other slot takes the same local template.
    """

    template_cdn = str(settings.NINJA_DIR / "templates" / Swagger.template)


api = NinjaAPI(
    title="gamed-console API",
    version="1",
    description=(
        "Runs of LangGraph pipelines: start, inspect, follow, retry from a stage.\n\n"
        "Authenticate with an API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`) "
        "or a staff session (with the CSRF token on writes). Every error has the shape "
        '`{"detail": "...", "code": "..."}`.'
    ),
    urls_namespace="api",
    auth=API_AUTH,
    # No validator badge, which Swagger UI would fetch from validator.swagger.io.
    docs=LocalSwagger(settings={"validatorUrl": None}),
    docs_decorator=docs_access,
    parser=JsonObjectParser(),
)
# Runs need the view permission; the graph catalogue and health need none beyond auth.
for run_router in (runs.router, logs.router, actions.router, events.router):
    run_router.add_decorator(needs_view_permission)
api.add_router("", graphs.router)
api.add_router("", runs.router)
api.add_router("", logs.router)
api.add_router("", actions.router)
api.add_router("", events.router)
api.add_router("", health.router)


def error(request: HttpRequest, status: int, detail: str, code: str, **extra):
    return api.create_response(request, {"detail": detail, "code": code, **extra}, status=status)


@api.exception_handler(PipelineError)
def pipeline_error(request: HttpRequest, exc: PipelineError):
    return error(request, status_for(exc), exc.message, exc.code, **exc.details)


@api.exception_handler(NinjaValidationError)
def invalid_request(request: HttpRequest, exc: NinjaValidationError):
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors
    )
    return error(request, 422, problems or "invalid request", "invalid_request")


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError):
    if isinstance(exc, BadApiKey):
        return error(request, 401, str(exc), "invalid_api_key")
    return error(
        request,
        401,
        "Authentication required: an API key (X-API-Key or Authorization: Bearer) or a staff "
        "session.",
        "unauthorized",
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError):
    # django-ninja reports a body the parser refused as its own 400; the parser's error says why.
    if isinstance(exc.__cause__, ApiError):
        exc = exc.__cause__
    default = {403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    code = getattr(exc, "code", None) or default.get(exc.status_code, "invalid_request")
    if exc.status_code == 403 and "CSRF" in str(exc):
        code = "csrf_failed"
    return error(request, exc.status_code, str(exc), code)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig):
    return error(request, 413, too_large_detail(), "request_too_large")


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404):
    return error(request, 404, "Not found.", "not_found")


@api.exception_handler(DatabaseOperationalError)
def database_unavailable(request: HttpRequest, exc: DatabaseOperationalError):
    # No free connection in the web process's pool in time, or the database is down: busy,
    # not broken. The exception's type only: its message can name hosts and users.
    logger.warning(
        "API %s %s: database unavailable (%s)",
        request.method,
        request.path,
        type(exc.__cause__ or exc).__name__,
    )
    return error(request, 503, "The database is busy or unreachable; try again.", "unavailable")


@api.exception_handler(Exception)
def server_error(request: HttpRequest, exc: Exception):
    logger.exception("API error on %s %s", request.method, request.path)
    return error(request, 500, "Internal server error.", "server_error")


@csrf_exempt  # it changes nothing; a CSRF page would hide the 404
def unknown_endpoint(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Paths under /api/ that match no endpoint answer in the API's error shape too."""
    return JsonResponse({"detail": "No such API endpoint.", "code": "not_found"}, status=404)
