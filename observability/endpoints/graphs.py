"""Registered graphs: their stages, input schema and shape."""

from django.http import HttpRequest
from ninja import Router

from observability.auth import ApiError
from observability.errors import errors
from observability.openapi import links
from observability.schemas import GraphOut
from pipeline.exceptions import UnknownGraph
from pipeline.graphs import (
    builder_for,
    compiled_graph,
    input_json_schema,
    registered_graphs,
    stage_names,
)

router = Router(tags=["graphs"])


def describe(name: str) -> dict:
    drawable = compiled_graph(name).get_graph()
    return {
        "name": name,
        "stages": stage_names(name),
        "subject_field": getattr(builder_for(name), "subject_field", "question"),
        "input_schema": input_json_schema(name),
        "nodes": list(drawable.nodes),
        "edges": [
            {"source": e.source, "target": e.target, "conditional": e.conditional}
            for e in drawable.edges
        ],
        "mermaid": drawable.draw_mermaid(),
    }


@router.get(
    "/graphs",
    response={200: list[GraphOut], **errors()},
    openapi_extra=links(200, graph_detail={"name": "$response.body#/0/name"}),
)
def list_graphs(request: HttpRequest):
    """Every registered graph with its stages, input schema and edges."""
    return [describe(name) for name in registered_graphs()]


@router.get("/graphs/{name}", response={200: GraphOut, **errors(404)})
def graph_detail(request: HttpRequest, name: str):
    """One registered graph."""
    try:
        return describe(name)
    except UnknownGraph as exc:
        raise ApiError(404, exc.message, exc.code) from None
