"""Lets a long-running stage report that it is alive and learn that it should stop.

The runner installs a hook for the duration of a run; a stage calls `tick()` from inside long
work (a loop over documents, a slow model call in chunks). Outside a console run it does nothing.
"""

import time
from collections.abc import Callable
from contextvars import ContextVar

_hook: ContextVar[Callable[[], None] | None] = ContextVar("gamed_progress_hook", default=None)
_run_id: ContextVar[str | None] = ContextVar("gamed_run_id", default=None)


def current_run_id() -> str | None:
    """The id of the run this code executes in (also outside its stages), if any."""
    return _run_id.get()


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


def install(hook: Callable[[], None] | None, run_id: str | None = None):
    return _hook.set(hook), _run_id.set(run_id)


def uninstall(tokens) -> None:
    hook_token, run_token = tokens
    _hook.reset(hook_token)
    _run_id.reset(run_token)
