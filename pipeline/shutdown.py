"""A worker host stops within GAMED_SHUTDOWN_SECONDS of SIGTERM (or SIGINT), sent to `qcluster`
or to its whole process group, as systemd, Kubernetes and Ctrl-C do.

django-q2 alone cannot: on a SIGTERM to the group its sentinel dies at once, and the main
process then waits forever on an event only the dead sentinel could acknowledge; on a SIGTERM
to the main process only, the sentinel waits for every running run to finish. Here:

- `qcluster` blocks SIGTERM before django-q2 forks its processes, so the sentinel, the pusher
  and the monitor survive a SIGTERM to the group and stop in order when the main process tells
  them to;
- the main process forwards SIGTERM to the worker processes, then stops the cluster;
- a worker that executes a run interrupts it at once (the run ends `interrupted` and is queued
  to resume, for another worker to continue from its latest checkpoint); tasks it had taken
  ahead are put back on the queue without being started;
- whatever has not stopped after GAMED_SHUTDOWN_SECONDS is killed (a run still held then is
  recovered by the reaper once its lease expires).
"""

import logging
import os
import signal
import threading
import time

import psutil
from django.conf import settings

from pipeline import progress

logger = logging.getLogger(__name__)

TERMINATION = {signal.SIGTERM}
_stopping = threading.Event()


class WorkerStopping(SystemExit):
    """Raised in a worker's run when its host is shutting down; the runner interrupts the run
    and queues it to resume. A SystemExit, so that stage code's `except Exception` lets it by."""


def stopping() -> bool:
    return _stopping.is_set()


def _exit_after(seconds: float, *, kill_descendants: bool) -> None:
    def expire():
        time.sleep(seconds)
        logger.error("still running %.0f s after the shutdown began: exiting now", seconds)
        if kill_descendants:
            for child in psutil.Process().children(recursive=True):
                child.kill()
        os._exit(1)

    threading.Thread(target=expire, name="gamed-shutdown-deadline", daemon=True).start()


# The main process of `qcluster` -----------------------------------------------------------


def hold_termination() -> None:
    """Before the cluster starts: the processes django-q2 forks inherit a blocked SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION)


def stop_cluster_on_termination() -> None:
    """After the cluster started: SIGTERM or SIGINT stops it within the bound."""
    stop_cluster = signal.getsignal(signal.SIGTERM)  # django-q2's Cluster.sig_handler

    def on_termination(signum, frame):
        if _stopping.is_set():
            return
        _stopping.set()
        logger.info("%s: stopping; runs in progress are interrupted and queued to resume",
                    signal.Signals(signum).name)  # fmt: skip
        _exit_after(settings.GAMED_SHUTDOWN_SECONDS, kill_descendants=True)
        for child in psutil.Process().children(recursive=True):
            # Only workers act on it; django-q2's own processes keep it blocked.
            child.send_signal(signal.SIGTERM)
        if callable(stop_cluster):
            stop_cluster(signum, frame)

    signal.signal(signal.SIGTERM, on_termination)
    signal.signal(signal.SIGINT, on_termination)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINATION)


# A worker process ------------------------------------------------------------------------


def on_worker_spawn(**kwargs) -> None:
    """django-q2's post_spawn signal, in each new worker process."""
    signal.signal(signal.SIGTERM, _on_worker_termination)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINATION)


def _on_worker_termination(signum, frame):
    if _stopping.is_set():
        return
    _stopping.set()
    # Leave the main process time to stop the rest of the cluster within the bound.
    _exit_after(max(1.0, settings.GAMED_SHUTDOWN_SECONDS - 2), kill_descendants=False)
    if progress.current_run_id() is not None:
        raise WorkerStopping("the worker's host is shutting down (SIGTERM)")
