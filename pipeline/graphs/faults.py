"""Fault injection and the node execution ledger, for demos and tests (GAMED_FAULT_INJECTION).

Off by default: wrapped stages then run as they are, and write nothing. When the setting is on
(the test suite and `make run`'s demo), a run's input may carry
`"faults": {"<stage>": "<fault>"}`:

- `fail_always`: the stage raises every time;
- `fail_once`: the stage raises the first time it runs in a run's lineage (a retry or a
  resume of that run then succeeds);
- `sleep:<seconds>`: the stage takes that long (cooperatively: it heartbeats and can be
  cancelled meanwhile).

Each real execution of a wrapped stage is written to the `NodeInvocation` ledger, which is how
tests and operators prove which stages a retry or a resume actually re-executed.
"""

import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp

from pipeline import progress

FAULT_KINDS = ("fail_always", "fail_once", "sleep:<seconds>")

_failed_once_without_run: set[tuple[str, str]] = set()
_memory_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """Raised by a stage that was told to fail."""


def check_fault_spec(stage: str, spec: str, stages: list[str]) -> None:
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(stages)})")
    if spec in ("fail_always", "fail_once"):
        return
    if spec.startswith("sleep:"):
        try:
            seconds = float(spec.removeprefix("sleep:"))
        except ValueError:
            seconds = -1
        if 0 <= seconds <= 86400:
            return
    raise ValueError(f"unknown fault {spec!r} for {stage!r} (use one of: {', '.join(FAULT_KINDS)})")


def _ids(config: RunnableConfig | None) -> tuple[str | None, str | None, str]:
    configurable = (config or {}).get("configurable", {})
    return (
        configurable.get("gamed_run_id"),
        configurable.get("gamed_root_run_id"),
        configurable.get("thread_id", ""),
    )


def _failed_before(stage: str, run_id: str | None, root_id: str | None, thread_id: str) -> bool:
    if run_id is None:
        with _memory_lock:
            seen = (thread_id, stage) in _failed_once_without_run
            _failed_once_without_run.add((thread_id, stage))
        return seen
    from pipeline.models import NodeInvocation

    return NodeInvocation.objects.filter(
        root_run_id=root_id, stage_name=stage, outcome="failed"
    ).exists()


def apply_fault(stage: str, spec: str | None, config: RunnableConfig | None) -> None:
    if not spec:
        return
    if spec.startswith("sleep:"):
        progress.sleep(float(spec.removeprefix("sleep:")))
    elif spec == "fail_always":
        raise InjectedFault(f"{stage}: injected failure (fail_always)")
    elif spec == "fail_once" and not _failed_before(stage, *_ids(config)):
        raise InjectedFault(f"{stage}: injected failure (fail_once, first execution)")


def stage(fn: Callable[[dict], dict]) -> Callable[[dict, RunnableConfig], dict]:
    """Wrap a node: record it in the ledger and apply the fault the run asked for."""
    name = fn.__name__

    # No functools.wraps: LangGraph reads the signature to decide whether to pass `config`.
    def node(state: dict, config: RunnableConfig) -> dict:
        if not settings.GAMED_FAULT_INJECTION:
            return fn(state)
        from pipeline.models import NodeInvocation

        run_id, root_id, _ = _ids(config)
        entry = None
        if run_id is not None:
            entry = NodeInvocation.objects.create(
                run_id=run_id, root_run_id=root_id, stage_name=name
            )
        outcome = "failed"
        try:
            apply_fault(name, (state.get("faults") or {}).get(name), config)
            result = fn(state)
            outcome = "succeeded"
            return result
        except GraphBubbleUp:
            outcome = "asked"  # interrupt(): it runs again once answered
            raise
        finally:
            if entry is not None:
                NodeInvocation.objects.filter(pk=entry.pk).update(outcome=outcome)

    node.__name__ = name
    node.__qualname__ = fn.__qualname__
    node.__doc__ = fn.__doc__
    return node


def ledger_counts(run_ids: Any) -> dict[str, int]:
    """How many times each stage really executed in the given runs."""
    from django.db.models import Count

    from pipeline.models import NodeInvocation

    rows = (
        NodeInvocation.objects.filter(run_id__in=run_ids)
        .values("stage_name")
        .annotate(n=Count("id"))
    )
    return {row["stage_name"]: row["n"] for row in rows}
