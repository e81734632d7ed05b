"""Small helpers that are not Django: durations people type, and socket readiness."""

import select
from datetime import timedelta

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """Seconds in "30d", "12h", "90m", "45s", "2w" or a bare number of seconds."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (use e.g. 30d, 12h, 90m, 45s)") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
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
