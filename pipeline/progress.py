"""Lets a long-running stage report that it is alive and learn that it should stop.

The runner installs a hook for the duration of a run; a stage calls `tick()` from inside long
work (a loop over documents, a slow model call in chunks). Outside a console run it does nothing.
"""

import time
from collections.abc import Callable
from contextvars import ContextVar

_hook: ContextVar[Callable[[], None] | None] = ContextVar("gamed_progress_hook", default=None)


def tick() -> None:
    """Renew the run's heartbeat if due; raise `RunCancelled` if an operator cancelled it."""
    hook = _hook.get()
    if hook is not None:
        hook()


def sleep(seconds: float, *, step: float = 0.1) -> None:
    """`time.sleep` that keeps ticking, so a slow stage stays alive and cancellable."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(step, remaining))
        tick()


def install(hook: Callable[[], None] | None):
    return _hook.set(hook)


def uninstall(token) -> None:
    _hook.reset(token)
