"""Registered graphs: their stages, input and context schemas, and shape."""

from django.http import HttpRequest
from ninja import Router

from observability.auth import ApiError
from observability.errors import errors
from observability.openapi import links
from observability.schemas import GraphOut
from pipeline.exceptions import GraphUnavailable, UnknownGraph
from pipeline.graphs import (
    compiled_graph,
    context_json_schema,
    input_json_schema,
    is_async,
    registered_graphs,
    stage_paths,
    subject_field,
)

router = Router(tags=["graphs"])


def describe(name: str) -> dict:
    """The graph's description; a graph that cannot be built says why instead."""
    try:
        drawable = compiled_graph(name).get_graph()
        return {
            "name": name,
            "stages": stage_paths(name),
            "subject_field": subject_field(name),
            "input_schema": input_json_schema(name),
            "context_schema": context_json_schema(name),
            "asynchronous": is_async(name),
            "nodes": list(drawable.nodes),
            "edges": [
                {"source": e.source, "target": e.target, "conditional": e.conditional}
                for e in drawable.edges
            ],
            "mermaid": drawable.draw_mermaid(),
        }
    except GraphUnavailable as exc:
        return {"name": name, "error": exc.message}


@router.get(
    "/graphs",
    response={200: list[GraphOut], **errors()},
    openapi_extra=links(200, graph_detail={"name": "$response.body#/0/name"}),
)
def list_graphs(request: HttpRequest):
    """Every registered graph with its stages, input schema and edges (or why it cannot be
    built)."""
    return [describe(name) for name in registered_graphs()]


@router.get("/graphs/{name}", response={200: GraphOut, **errors(404)})
def graph_detail(request: HttpRequest, name: str):
    """One registered graph."""
    try:
        return describe(name)
    except UnknownGraph as exc:
        raise ApiError(404, exc.message, exc.code) from None
