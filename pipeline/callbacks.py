"""LangChain callbacks of a run: what happens inside its stages that LangGraph's stream does not
show, attached through the run's config so that no node needs code for it."""

import threading
from collections import defaultdict
from typing import Any
from uuid import UUID

from django.db import connections
from django.utils import timezone
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.errors import GraphBubbleUp


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def task_of(metadata: dict | None) -> str | None:
    """The LangGraph task a callback event belongs to ("sub:<id>|inner:<id>" -> "<id>")."""
    namespace = (metadata or {}).get("langgraph_checkpoint_ns")
    return namespace.rpartition(":")[2] if namespace else None


class StageCallbacks(BaseCallbackHandler):
    """Counts the tries of each task: a node with a `RetryPolicy` runs again after an error,
    and the stream only reports its last try."""

    # Cheap bookkeeping: run it in the node's thread instead of an executor.
    run_inline = True

    def __init__(self):
        self._home = threading.get_ident()
        self._tries: dict[UUID, str] = {}
        self._open: set[str] = set()
        self.failed_tries: defaultdict[str, list[dict]] = defaultdict(list)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict | None = None,
        **kwargs: Any,
    ) -> None:
        task_id = task_of(metadata)
        # A try is the node's own runnable, named after the node; runnables inside it share
        # its metadata and are not tries.
        if (
            task_id
            and task_id not in self._open
            and kwargs.get("name") == metadata.get("langgraph_node")
        ):
            self._open.add(task_id)
            self._tries[run_id] = task_id

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if (task_id := self._tries.pop(run_id, None)) is not None:
            self._task_ended(task_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if (task_id := self._tries.pop(run_id, None)) is None:
            return
        self._task_ended(task_id)
        # An interrupt or a Command to the parent graph is how a node hands over, not a failure.
        if not isinstance(error, GraphBubbleUp):
            self.failed_tries[task_id].append(
                {"error": describe_error(error)[:2000], "at": timezone.now().isoformat()}
            )

    def _task_ended(self, task_id: str) -> None:
        self._open.discard(task_id)
        if threading.get_ident() != self._home:
            # A node LangGraph ran in its thread pool may have used Django's ORM: that thread's
            # connections would stay open until the thread is collected, one per thread.
            connections.close_all()

    def tries(self, task_id: str, *, failed: bool) -> dict:
        """The stage row's `tries` and `retry_errors` for a task that ended."""
        errors = self.failed_tries.pop(task_id, [])
        if failed:
            return {"tries": max(len(errors), 1), "retry_errors": errors[:-1]}
        return {"tries": len(errors) + 1, "retry_errors": errors}
