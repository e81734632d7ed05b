"""`Idempotency-Key` for API writes: the same key replays the first response, creates nothing.

Keys are scoped per caller and kept for IDEMPOTENCY_TTL. A key reused with a different request
(method, path or body) is refused with 422; a key whose first request is still being handled is
refused with 409. Responses below 500 are kept (a refusal is replayed too); after a server error
the key is released so that the client can try again.
"""

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from ninja import Header, Status

from observability.auth import ApiError, Caller
from observability.models import IdempotentRequest
from pipeline.exceptions import PipelineError

IDEMPOTENCY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x20-\x7e]{1,255}")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="Sending the same request with the same key replays the first response.",
    ),
]


def _fingerprint(request: HttpRequest, body: dict) -> str:
    text = json.dumps([request.method, request.path, body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(record: IdempotentRequest, fingerprint: str) -> JsonResponse:
    if record.fingerprint != fingerprint:
        raise ApiError(
            422,
            f"{HEADER} {record.key!r} was already used for a different request.",
            "idempotency_key_reused",
        )
    if record.status_code is None:
        raise ApiError(
            409, f"A request with {HEADER} {record.key!r} is still in progress.", "conflict"
        )
    response = JsonResponse(record.response, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _claim(who: Caller, key: str, fingerprint: str) -> IdempotentRequest | JsonResponse:
    """A new in-progress record for the key, or the replay of the request that holds it."""
    now = timezone.now()
    IdempotentRequest.objects.filter(created_at__lt=now - IDEMPOTENCY_TTL).delete()
    records = IdempotentRequest.objects.filter(caller=who.scope, key=key)
    existing = records.first()
    if existing is not None:
        return _replay(existing, fingerprint)
    try:
        with transaction.atomic():
            return IdempotentRequest.objects.create(
                caller=who.scope, key=key, fingerprint=fingerprint
            )
    except IntegrityError:
        # A concurrent request with the same key got there first.
        return _replay(records.get(), fingerprint)


def idempotent(
    request: HttpRequest,
    who: Caller,
    key: str | None,
    body: dict,
    handle: Callable[[], tuple[int, dict]],
    error_status: Callable[[PipelineError], int],
) -> Status | JsonResponse:
    """Run `handle` (returning status and JSON body) once per Idempotency-Key."""
    if not key:
        return Status(*handle())
    if not KEY_PATTERN.fullmatch(key):
        raise ApiError(
            422, f"{HEADER} must be 1 to 255 printable ASCII characters.", "invalid_request"
        )
    claimed = _claim(who, key, _fingerprint(request, body))
    if isinstance(claimed, JsonResponse):
        return claimed
    try:
        status, payload = handle()
    except PipelineError as exc:
        claimed.status_code = error_status(exc)
        claimed.response = {"detail": exc.message, "code": exc.code, **exc.details}
        claimed.save(update_fields=["status_code", "response"])
        raise
    except BaseException:
        claimed.delete()
        raise
    claimed.status_code, claimed.response = status, payload
    claimed.save(update_fields=["status_code", "response"])
    return Status(status, payload)
