"""LangChain callbacks of a run: what happens inside its stages that LangGraph's stream does not
show, attached through the run's config so that no node needs code for it."""

import threading
from collections import defaultdict
from typing import Any
from uuid import UUID

from django.db import connections
from django.utils import timezone
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp

from pipeline import usage


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def task_of(metadata: dict | None) -> str | None:
    """The LangGraph task a callback event belongs to ("sub:<id>|inner:<id>" -> "<id>")."""
    namespace = (metadata or {}).get("langgraph_checkpoint_ns")
    return namespace.rpartition(":")[2] if namespace else None


def _runs_in(namespace: str, task_id: str) -> bool:
    return any(segment.rpartition(":")[2] == task_id for segment in namespace.split("|"))


class StageCallbacks(BaseCallbackHandler):
    """Counts the tries of each task (a node with a `RetryPolicy` runs again after an error,
    and the stream only reports its last try), and adds up the tokens of every model call a
    task makes, in the node itself or in tools and subgraphs it runs."""

    # Cheap bookkeeping: run it in the node's thread instead of an executor.
    run_inline = True

    def __init__(self):
        self._home = threading.get_ident()
        self._tries: dict[UUID, str] = {}
        self._open: set[str] = set()
        self.failed_tries: defaultdict[str, list[dict]] = defaultdict(list)
        # LangGraph runs sync tasks in its thread pool: model calls end in many threads.
        self._usage_lock = threading.Lock()
        self._calls: dict[UUID, tuple[str, str]] = {}
        self._usage: dict[str, dict[str, usage.Usage]] = {}

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

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        metadata: dict | None = None,
        **kwargs: Any,
    ) -> None:
        self._call_started(run_id, metadata, kwargs.get("invocation_params"))

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict | None = None,
        **kwargs: Any,
    ) -> None:
        self._call_started(run_id, metadata, kwargs.get("invocation_params"))

    def _call_started(self, run_id: UUID, metadata: dict | None, params: dict | None) -> None:
        namespace = (metadata or {}).get("langgraph_checkpoint_ns")
        if not namespace:
            return
        params = params or {}
        asked = (
            (metadata or {}).get("ls_model_name")
            or params.get("model_name")
            or params.get("model")
            or ""
        )
        with self._usage_lock:
            self._calls[run_id] = (namespace, str(asked))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._usage_lock:
            call = self._calls.pop(run_id, None)
        if call is None:
            return
        namespace, asked = call
        model = usage.model_name(response, asked)
        counted = usage.usage_of(response)
        with self._usage_lock:
            by_model = self._usage.setdefault(namespace, {})
            by_model.setdefault(model, usage.Usage()).add(counted)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._usage_lock:
            self._calls.pop(run_id, None)

    def model_usage(self, task_id: str) -> dict:
        """The stage row's usage fields for a task that ended: its own calls and those of
        tasks inside it that are not stages of their own (theirs were taken when they ended)."""
        by_model: dict[str, usage.Usage] = {}
        with self._usage_lock:
            for namespace in [ns for ns in self._usage if _runs_in(ns, task_id)]:
                for model, counted in self._usage.pop(namespace).items():
                    by_model.setdefault(model, usage.Usage()).add(counted)
        return usage.stage_fields(by_model)

    def tries(self, task_id: str, *, failed: bool) -> dict:
        """The stage row's `tries` and `retry_errors` for a task that ended."""
        errors = self.failed_tries.pop(task_id, [])
        if failed:
            return {"tries": max(len(errors), 1), "retry_errors": errors[:-1]}
        return {"tries": len(errors) + 1, "retry_errors": errors}
