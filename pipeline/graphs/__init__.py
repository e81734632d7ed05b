"""Graph registry: `settings.GAMED_GRAPHS` maps a name to "module:builder".

A builder returns an uncompiled `StateGraph`; the engine compiles it with the process's
checkpointer. A builder may set `builder.subject_field` to the input key that says what a run is
about (default "question").
"""

import os
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import Any, get_type_hints, is_typeddict

import typing_extensions
from django.conf import settings
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, TypeAdapter, ValidationError

from pipeline.checkpointer import get_checkpointer
from pipeline.exceptions import InvalidInput, UnknownGraph

_compiled: dict[tuple[int, int, str], CompiledStateGraph] = {}


def registered_graphs() -> list[str]:
    return sorted(settings.GAMED_GRAPHS)


@cache
def _load_builder(target: str) -> Callable[[], StateGraph]:
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)


def builder_for(name: str) -> Callable[[], StateGraph]:
    try:
        target = settings.GAMED_GRAPHS[name]
    except KeyError:
        known = ", ".join(registered_graphs()) or "none"
        raise UnknownGraph(f"Unknown graph {name!r}. Registered graphs: {known}.") from None
    return _load_builder(target)


@cache
def _state_graph(target: str) -> StateGraph:
    return _load_builder(target)()


def state_graph(name: str) -> StateGraph:
    builder_for(name)
    return _state_graph(settings.GAMED_GRAPHS[name])


def compiled_graph(name: str) -> CompiledStateGraph:
    saver = get_checkpointer()
    key = (os.getpid(), id(saver), name)
    graph = _compiled.get(key)
    if graph is None:
        graph = _compiled[key] = state_graph(name).compile(checkpointer=saver)
    return graph


def stage_names(name: str) -> list[str]:
    """The graph's nodes in declaration order."""
    return [node for node in state_graph(name).nodes if not node.startswith("__")]


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@cache
def _adapter(schema: type) -> TypeAdapter:
    if is_typeddict(schema):
        # pydantic only accepts typing_extensions.TypedDict before Python 3.12; rebuild it.
        schema = typing_extensions.TypedDict(
            schema.__name__, get_type_hints(schema, include_extras=True), total=schema.__total__
        )
    return TypeAdapter(schema)


def validate_input(name: str, data: Any) -> dict:
    """Check `data` against the graph's input schema; return it normalised as JSON."""
    graph = state_graph(name)
    if not isinstance(data, dict):
        raise InvalidInput(f"Input for {name!r} must be a JSON object, got {type(data).__name__}.")
    schema = graph.input_schema
    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_validate(data).model_dump(mode="json")
        adapter = _adapter(schema)
        return adapter.dump_python(adapter.validate_python(data), mode="json")
    except ValidationError as exc:
        raise InvalidInput(f"Invalid input for {name!r}: {_format_errors(exc)}") from None


def validate_context(name: str, data: Any) -> dict:
    """Check `data` against the graph's context schema; return it normalised as JSON."""
    schema = state_graph(name).context_schema
    if not data:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"Context for {name!r} must be a JSON object, got {type(data).__name__}."
        )
    if schema is None:
        if data:
            raise InvalidInput(f"Graph {name!r} takes no context (it has no context_schema).")
        return {}
    try:
        adapter = _adapter(schema)
        return adapter.dump_python(adapter.validate_python(data), mode="json")
    except ValidationError as exc:
        raise InvalidInput(f"Invalid context for {name!r}: {_format_errors(exc)}") from None


def context_for(name: str, data: dict) -> Any:
    """The runtime context LangGraph is given for a run's stored `context` (None: none)."""
    schema = state_graph(name).context_schema
    if schema is None:
        return None
    return _adapter(schema).validate_python(data or {})


def subject_of(name: str, data: dict) -> str:
    field = getattr(builder_for(name), "subject_field", "question")
    value = data.get(field, "")
    return str(value)[:255] if value is not None else ""


def input_json_schema(name: str) -> dict:
    """JSON Schema of the graph's input (what `validate_input` accepts)."""
    schema = state_graph(name).input_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return _adapter(schema).json_schema()
