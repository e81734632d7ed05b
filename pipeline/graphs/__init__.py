"""Graph registry: `settings.GAMED_GRAPHS` maps a name to "module:builder".

A builder returns a `StateGraph` (or a compiled one, whose `StateGraph` is used); the engine
compiles it with the process's checkpointer. `subject_field`, set on the builder function or on
the `StateGraph`, names the input key that says what a run is about (default "question").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings

from pipeline.checkpointer import get_async_checkpointer, get_checkpointer
from pipeline.exceptions import GraphUnavailable, InvalidContext, UnknownGraph

if TYPE_CHECKING:
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

# Inner stages are named by their path from the top-level stage: "review > check".
PATH_SEPARATOR = " > "

_compiled: dict[tuple[int, int, str], CompiledStateGraph] = {}


def registered_graphs() -> list[str]:
    return sorted(settings.GAMED_GRAPHS)


@cache
def _load_builder(target: str) -> Callable[[], Any]:
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)


def _target(name: str) -> str:
    try:
        return settings.GAMED_GRAPHS[name]
    except KeyError:
        known = ", ".join(registered_graphs()) or "none"
        raise UnknownGraph(f"Unknown graph {name!r}. Registered graphs: {known}.") from None


def _unavailable(name: str, exc: Exception) -> GraphUnavailable:
    return GraphUnavailable(
        f"Graph {name!r} ({_target(name)}) cannot be built: {type(exc).__name__}: {exc}"
    )


def builder_for(name: str) -> Callable[[], Any]:
    target = _target(name)
    try:
        return _load_builder(target)
    except Exception as exc:
        raise _unavailable(name, exc) from exc


@cache
def _state_graph(target: str) -> StateGraph:
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

    graph = _load_builder(target)()
    if isinstance(graph, CompiledStateGraph):
        graph = graph.builder
    if not isinstance(graph, StateGraph):
        raise TypeError(f"the builder returned {type(graph).__name__}, not a StateGraph")
    # Compiling checks the graph's shape (edges to unknown nodes, no entry point, ...).
    graph.compile()
    return graph


def state_graph(name: str) -> StateGraph:
    target = _target(name)
    try:
        return _state_graph(target)
    except Exception as exc:
        raise _unavailable(name, exc) from exc


def graph_problems() -> dict[str, str]:
    """Registered graphs that cannot be built or compiled, with why."""
    problems = {}
    for name in registered_graphs():
        try:
            state_graph(name)
        except GraphUnavailable as exc:
            problems[name] = exc.message
    return problems


def is_async(name: str) -> bool:
    """Does the graph have a node (in it or in a subgraph) that only runs on the async API?"""
    return any(_async_only(node.runnable) for node in _all_nodes(state_graph(name)))


def has_subgraphs(name: str) -> bool:
    """Does the graph run subgraphs whose stages the console should record? Compiled graphs
    added as nodes are found; a graph that calls a subgraph from inside a node says so with
    `stream_subgraphs = True` on its builder or StateGraph."""
    if graph_attribute(name, "stream_subgraphs", False):
        return True
    return any(_subgraph(spec.runnable) is not None for spec in _all_nodes(state_graph(name)))


def _async_only(runnable: Any) -> bool:
    return getattr(runnable, "func", None) is None and getattr(runnable, "afunc", None) is not None


def _subgraph(runnable: Any) -> StateGraph | None:
    from langgraph.graph.state import CompiledStateGraph

    if isinstance(runnable, CompiledStateGraph):
        return runnable.builder
    return None


def _all_nodes(graph: StateGraph) -> Iterator[Any]:
    for spec in graph.nodes.values():
        yield spec
        if (inner := _subgraph(spec.runnable)) is not None:
            yield from _all_nodes(inner)


def compiled_graph(name: str, *, asynchronous: bool = False) -> CompiledStateGraph:
    """The graph compiled with this process's saver (its async variant for async graphs)."""
    saver = get_async_checkpointer() if asynchronous else get_checkpointer()
    key = (os.getpid(), id(saver), name)
    graph = _compiled.get(key)
    if graph is None:
        graph = _compiled[key] = state_graph(name).compile(checkpointer=saver)
    return graph


def stage_names(name: str) -> list[str]:
    """The graph's top-level nodes in declaration order."""
    return [node for node in state_graph(name).nodes if not node.startswith("__")]


def stage_paths(name: str) -> list[str]:
    """Every stage, with the inner stages of compiled subgraphs after their node: "sub > a"."""

    def walk(graph: StateGraph, prefix: str) -> Iterator[str]:
        for node, spec in graph.nodes.items():
            if node.startswith("__"):
                continue
            yield prefix + node
            if (inner := _subgraph(spec.runnable)) is not None:
                yield from walk(inner, prefix + node + PATH_SEPARATOR)

    return list(walk(state_graph(name), ""))


def top_stage(path: str) -> str:
    return path.split(PATH_SEPARATOR, 1)[0]


def validate_input(name: str, data: Any) -> dict:
    """Check `data` against the graph's input schema; return it normalised as JSON."""
    # Schemas (pydantic) are imported where used, as LangGraph is: commands that read runs
    # need neither.
    from pipeline.graphs.schemas import input_spec

    return input_spec(name, state_graph(name).input_schema).validate(data)


def input_json_schema(name: str) -> dict:
    """JSON Schema of the graph's input: what `validate_input` accepts."""
    from pipeline.graphs.schemas import input_spec

    return input_spec(name, state_graph(name).input_schema).json_schema()


def validate_context(name: str, data: Any) -> dict:
    """Check `data` against the graph's context schema; return it normalised as JSON."""
    from pydantic import ValidationError

    from pipeline.graphs.schemas import adapter

    schema = state_graph(name).context_schema
    if not data:
        data = {}
    if not isinstance(data, dict):
        raise InvalidContext(
            f"Context for {name!r} must be a JSON object, got {type(data).__name__}."
        )
    if schema is None:
        if data:
            raise InvalidContext(f"Graph {name!r} takes no context (it has no context_schema).")
        return {}
    try:
        checked = adapter(schema)
        return checked.dump_python(checked.validate_python(data), mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'context'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidContext(f"Invalid context for {name!r}: {problems}") from None


def context_json_schema(name: str) -> dict | None:
    from pipeline.graphs.schemas import adapter

    schema = state_graph(name).context_schema
    return None if schema is None else adapter(schema).json_schema()


def context_for(name: str, data: dict) -> Any:
    """The runtime context LangGraph is given for a run's stored `context` (None: none)."""
    from pipeline.graphs.schemas import adapter

    schema = state_graph(name).context_schema
    if schema is None:
        return None
    return adapter(schema).validate_python(data or {})


_MISSING = object()


def graph_attribute(name: str, attribute: str, default: Any = None) -> Any:
    """A setting the graph declares on its builder function or on its `StateGraph`
    (`subject_field`, `interrupt_timeout`, `interrupt_default`)."""
    for owner in (builder_for(name), state_graph(name)):
        value = getattr(owner, attribute, _MISSING)
        if value is not _MISSING:
            return value
    return default


def subject_field(name: str) -> str:
    return graph_attribute(name, "subject_field") or "question"


def subject_of(name: str, data: dict) -> str:
    value = data.get(subject_field(name), "")
    if isinstance(value, list) and value:
        # A conversation is about its first message: "text", [role, text] or {content: text}.
        first = value[0]
        if isinstance(first, dict):
            value = first.get("content", "")
        elif isinstance(first, list | tuple) and len(first) == 2:
            value = first[1]
        else:
            value = first
    return str(value)[:255] if value is not None else ""
