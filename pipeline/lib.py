"""Small helpers that are not Django: durations people type, JSON people send, and socket
readiness."""

import json
import math
import select
from datetime import timedelta
from typing import Any

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer is a typo, and would not fit in a date once subtracted from today.
MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> int:
    """Seconds in "30d", "12h", "90m", "45s", "2w" or a bare number of seconds."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30d, 12h, 90m, 45s)")
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than 100 years")
    return int(seconds)


def has_input(fileno: int) -> bool:
    """Whether the socket has something to read (poll, unlike select, takes any fd number)."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


def format_ms(ms: float | None) -> str:
    """A duration as people read it: "80 ms", "2.35 s", "3 min 5 s", "2 h 10 min"."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(int(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def format_duration(value: timedelta | None) -> str:
    return "-" if value is None else format_ms(value.total_seconds() * 1000)


# Deeper JSON is refused wherever a run's data comes in: recursive code (json, pydantic,
# LangGraph's serializer) fails on a few thousand levels, and no graph needs more than this.
MAX_JSON_DEPTH = 64


def load_json(text: str | bytes) -> Any:
    """Parse JSON text; ValueError (with a message for people) when it is not valid JSON or
    is nested too deeply to parse."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise ValueError("not valid JSON: not UTF-8 text") from None


def json_problem(value: Any) -> str | None:
    """Why `value` (parsed JSON) cannot be stored as a run's data, or None: a NUL character
    (Postgres stores none in text or JSON) or nesting beyond MAX_JSON_DEPTH."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text must not contain NUL (\\u0000) characters"
            continue
        if not isinstance(item, dict | list | tuple):
            continue
        if depth > MAX_JSON_DEPTH:
            return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        else:
            pending.extend((child, depth + 1) for child in item)
    return None
