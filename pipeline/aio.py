"""One event loop per process, in a thread of its own, for graphs with async nodes.

Async savers (aiosqlite's connection, psycopg's async pool) belong to the loop that opened them,
so a process keeps one loop for its whole life instead of one per run: `asyncio.run` would
close the loop, and the saver with it, after the first run.
"""

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

_lock = threading.Lock()
_loops: dict[int, asyncio.AbstractEventLoop] = {}


def event_loop() -> asyncio.AbstractEventLoop:
    # django-q2 forks its workers: a loop (and its thread) never crosses a fork.
    pid = os.getpid()
    with _lock:
        if pid not in _loops:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="gamed-async", daemon=True).start()
            _loops[pid] = loop
        return _loops[pid]


def submit(coro: Coroutine) -> Future:
    """Run `coro` on the process's loop; the future can be waited on or cancelled."""
    return asyncio.run_coroutine_threadsafe(coro, event_loop())


def run(coro: Coroutine) -> Any:
    return submit(coro).result()
