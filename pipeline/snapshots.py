"""Turning graph state into JSON that fits in a row."""

import dataclasses
import datetime
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID | Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return repr(obj)


def to_json(value: Any) -> Any:
    """A JSON-safe copy of `value` (unknown objects become their repr)."""
    return json.loads(json.dumps(value, default=_default))


def capped(value: Any, limit: int | None = None) -> Any:
    """JSON-safe `value`, or a marked preview when it is larger than the snapshot limit."""
    limit = limit or settings.GAMED_SNAPSHOT_MAX_BYTES
    text = json.dumps(value, default=_default)
    if len(text) <= limit:
        return json.loads(text)
    return {"_truncated": True, "bytes": len(text), "preview": text[: limit // 2]}
