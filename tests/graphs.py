"""Small graphs the tests register beside GamED (via GAMED_EXTRA_GRAPHS)."""

from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from pipeline.graphs.faults import stage


class ChainInput(BaseModel):
    question: str = "chain"
    faults: dict[str, str] = Field(default_factory=dict)


def _append(left: list, right: list) -> list:
    return left + right


class ChainState(TypedDict, total=False):
    question: str
    faults: dict[str, str]
    visited: Annotated[list, _append]


def _step(name: str):
    def node(state: dict) -> dict:
        return {"visited": [name]}

    node.__name__ = name
    return stage(node)


def build_chain() -> StateGraph:
    """s1 -> s2 -> ... -> s5, each recording itself in the ledger."""
    graph = StateGraph(ChainState, input_schema=ChainInput)
    graph.add_sequence([_step(f"s{i}") for i in range(1, 6)])
    graph.add_edge(START, "s1")
    graph.add_edge("s5", END)
    return graph


class TypedInput(TypedDict):
    question: str
    count: int


def build_typed() -> StateGraph:
    """A graph whose input schema is a plain typing.TypedDict."""
    graph = StateGraph(ChainState, input_schema=TypedInput)
    graph.add_node("only", _step("only"))
    graph.add_edge(START, "only")
    graph.add_edge("only", END)
    return graph


class FanState(TypedDict, total=False):
    question: str
    faults: dict[str, str]
    visited: Annotated[list, _append]


def build_fanout() -> StateGraph:
    """split -> (left, right in parallel) -> join."""
    graph = StateGraph(FanState, input_schema=ChainInput)
    for name in ("split", "left", "right", "join"):
        graph.add_node(name, _step(name))
    graph.add_edge(START, "split")
    graph.add_edge("split", "left")
    graph.add_edge("split", "right")
    graph.add_edge(["left", "right"], "join")
    graph.add_edge("join", END)
    return graph


class ChattyInput(BaseModel):
    records: int = 3
    fail_with_nul: bool = False


class ChattyState(TypedDict, total=False):
    records: int
    fail_with_nul: bool
    visited: Annotated[list, _append]


def build_chatty() -> StateGraph:
    """quiet -> chatty (logs `records` records; fails after a NUL with fail_with_nul) ->
    quiet_again."""
    import logging

    log = logging.getLogger("tests.chatty")

    def chatty(state: dict) -> dict:
        for i in range(state["records"]):
            log.info("record %d of %d", i + 1, state["records"], extra={"index": i + 1})
        if state.get("fail_with_nul"):
            # Postgres cannot store a NUL character in jsonb: this stage's row cannot be written.
            log.info("raw tool output: a\x00b")
            raise RuntimeError("chatty failed")
        return {"visited": ["chatty"]}

    graph = StateGraph(ChattyState, input_schema=ChattyInput)
    graph.add_sequence([_step("quiet"), chatty, _step("quiet_again")])
    graph.add_edge(START, "quiet")
    graph.add_edge("quiet_again", END)
    return graph
