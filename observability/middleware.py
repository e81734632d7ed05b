"""Under /api/, every error is JSON in the API's one shape, whoever answered it: Django's CSRF
check, a disallowed host, a method no endpoint takes, an unexpected server error."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.views.csrf import csrf_failure as django_csrf_failure

API_PREFIX = "/api/"
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    500: "server_error",
    503: "unavailable",
}


def too_large_detail() -> str:
    return f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def api_error(status: int, detail: str, code: str | None = None) -> JsonResponse:
    body = {"detail": detail, "code": code or CODES.get(status, "error")}
    return JsonResponse(body, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the API's shape under /api/, Django's page elsewhere."""
    if _is_api(request):
        return api_error(403, f"CSRF check failed: {reason}", "csrf_failed")
    return django_csrf_failure(request, reason)


class ApiErrorShapeMiddleware(MiddlewareMixin):
    """Turns an error that is not JSON, under /api/, into `{"detail", "code"}`. Outermost, so
    that it also sees what other middleware answered."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code < 400
            or response.streaming
            or not _is_api(request)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            shaped = api_error(405, f"{request.method} is not allowed here; allowed: {allowed}.")
            shaped["Allow"] = allowed
            return shaped
        return api_error(response.status_code, response.reason_phrase + ".")
