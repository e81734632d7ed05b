"""Small helpers that are not Django: durations people type, and socket readiness."""

import select

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
