"""Who is calling the API: an API key (acting as its owner) or a staff session."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyHeader, HttpBearer, SessionAuthIsStaff

from observability.models import ApiKey
from observability.permissions import can_view_runs
from pipeline.models import Surface
from pipeline.services import Actor


class ApiError(HttpError):
    """An HTTP error with a stable machine-readable code."""

    def __init__(self, status_code: int, message: str, code: str):
        super().__init__(status_code, message)
        self.code = code


class BadApiKey(AuthenticationError):
    def __init__(self, message: str = "Invalid or revoked API key."):
        super().__init__(message=message)


def bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate_key(raw: str | None) -> ApiKey | None:
    if not raw:
        return None  # no key: another scheme (a staff session) may still authenticate
    api_key = ApiKey.objects.authenticate(raw)
    if api_key is None:
        raise BadApiKey()
    api_key.touch()
    return api_key


class ApiKeyAuth(APIKeyHeader):
    """`X-API-Key: <key>`, or `Authorization: Bearer <key>` (documented by ApiKeyBearer)."""

    param_name = "X-API-Key"

    def _get_key(self, request: HttpRequest) -> str | None:
        # Every key a request carries must be the valid one: a second, bad key is not ignored.
        keys = {key for key in (super()._get_key(request), bearer_token(request)) if key}
        if len(keys) > 1:
            raise BadApiKey("Two different API keys: send one, in X-API-Key or as a Bearer token.")
        return next(iter(keys), None)

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        return authenticate_key(key)


class ApiKeyBearer(HttpBearer):
    """`Authorization: Bearer <key>`."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return authenticate_key(token.strip())


class StaffSession(SessionAuthIsStaff):
    """A staff user's session, with the CSRF token on writes. Without one the caller is told
    to authenticate (401), not that a token it has no reason to send is missing (403)."""

    def __call__(self, request: HttpRequest):
        if not (request.user.is_authenticated and request.user.is_staff):
            return None
        return super().__call__(request)


API_AUTH = [ApiKeyAuth(), ApiKeyBearer(), StaffSession()]


@dataclass(frozen=True)
class Caller:
    user: AbstractBaseUser
    api_key: ApiKey | None = None

    @property
    def actor_label(self) -> str:
        return self.api_key.label if self.api_key else ""

    @property
    def actor(self) -> Actor:
        """The caller as services record it."""
        return Actor(user=self.user, via=Surface.API, label=self.actor_label)

    @property
    def scope(self) -> str:
        """Who an Idempotency-Key belongs to."""
        return f"key:{self.api_key.pk}" if self.api_key else f"user:{self.user.pk}"


def caller(request: HttpRequest) -> Caller:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return Caller(user=auth.owner, api_key=auth)
    return Caller(user=request.user)


def require_perm(request: HttpRequest, perm: str) -> Caller:
    """The caller, if it may write and has `pipeline.<perm>_pipelinerun`; 403 otherwise."""
    who = caller(request)
    if who.api_key is not None and not who.api_key.can_write:
        raise ApiError(403, "This API key is read-only; use a read-write key.", "read_only_key")
    if not who.user.has_perm(f"pipeline.{perm}_pipelinerun"):
        raise ApiError(403, f"You do not have permission to {perm} runs.", "forbidden")
    return who


def needs_view_permission(operation):
    """Router decorator (operation mode): every operation on runs (reads, and actions, which
    answer with the run) needs the caller's view permission, as reaching them in admin does.
    An action also checks its own permission (`require_perm`)."""

    @wraps(operation)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not can_view_runs(caller(request).user):
            raise ApiError(403, "You do not have permission to view runs.", "forbidden")
        return operation(request, *args, **kwargs)

    return wrapper


# Answers of `access_check`, by caller: many streams of one caller ask the database once.
_verdicts: dict[str, tuple[float, bool]] = {}


def access_check(request: HttpRequest, shared_for: float = 0.0) -> Callable[[], bool]:
    """For a response that outlives its request (an event stream): asks again, when called,
    whether the caller may still see runs, as a new request would: the key not revoked, its
    owner (or the session's user, who must be staff) active and with the view permission.
    An answer less than `shared_for` seconds old, for the same caller, is reused."""
    who = caller(request)

    def still_allowed() -> bool:
        asked_at, verdict = _verdicts.get(who.scope, (-shared_for, False))
        if time.monotonic() - asked_at < shared_for:
            return verdict
        if who.api_key is not None:
            key = ApiKey.objects.active().select_related("owner").filter(pk=who.api_key.pk).first()
            user = key.owner if key is not None else None
        else:
            users = get_user_model()._default_manager
            user = users.filter(pk=who.user.pk, is_staff=True).first()
        verdict = user is not None and user.is_active and can_view_runs(user)
        _verdicts[who.scope] = (time.monotonic(), verdict)
        return verdict

    return still_allowed


def docs_access(view):
    """The OpenAPI schema: a valid API key or a staff session; the interactive docs: staff
    only (else the login page)."""
    staff_view = staff_member_required(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.path.endswith("/openapi.json"):
            key = ApiKeyAuth()._get_key(request)
            if key and ApiKey.objects.authenticate(key) is not None:
                return view(request, *args, **kwargs)
        return staff_view(request, *args, **kwargs)

    return wrapper
