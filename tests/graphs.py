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
    nul: bool = False
    fail: bool = False
    linger: float = 0.0


class ChattyState(TypedDict, total=False):
    records: int
    nul: bool
    fail: bool
    linger: float
    visited: Annotated[list, _append]


def build_chatty() -> StateGraph:
    """quiet -> chatty (logs `records` records, then one with a NUL character if `nul`, then
    fails if `fail`) -> quiet_again (takes `linger` seconds).

    Postgres cannot store a NUL character in jsonb: with `nul`, chatty's row cannot be written.
    """
    import logging
    import time

    log = logging.getLogger("tests.chatty")

    def chatty(state: dict) -> dict:
        for i in range(state["records"]):
            log.info("record %d of %d", i + 1, state["records"], extra={"index": i + 1})
        if state.get("nul"):
            log.info("raw tool output: a\x00b")
        if state.get("fail"):
            raise RuntimeError("chatty failed")
        return {"visited": ["chatty"]}

    def quiet_again(state: dict) -> dict:
        time.sleep(state.get("linger", 0.0))
        return {"visited": ["quiet_again"]}

    graph = StateGraph(ChattyState, input_schema=ChattyInput)
    graph.add_sequence([_step("quiet"), chatty, stage(quiet_again)])
    graph.add_edge(START, "quiet")
    graph.add_edge("quiet_again", END)
    return graph


class SleepyInput(BaseModel):
    nap: float = 60.0
    stubborn: bool = False


class SleepyState(TypedDict, total=False):
    nap: float
    stubborn: bool
    visited: Annotated[list, _append]


def build_sleepy() -> StateGraph:
    """first -> nap -> last. The first time `nap` runs in a run's lineage it blocks for `nap`
    seconds, as a slow model call would; it runs quickly after a resume. With `stubborn` it
    goes on blocking when its worker is told to stop."""
    import time

    from pipeline.models import NodeInvocation

    def nap(state: dict, config) -> dict:
        ids = config["configurable"]
        root = ids["gamed_root_run_id"]
        NodeInvocation.objects.create(
            run_id=ids["gamed_run_id"], root_run_id=root, stage_name="nap"
        )
        if NodeInvocation.objects.filter(root_run_id=root, stage_name="nap").count() == 1:
            deadline = time.monotonic() + state["nap"]
            while (left := deadline - time.monotonic()) > 0:
                try:
                    time.sleep(left)
                except SystemExit:
                    if not state["stubborn"]:
                        raise
        return {"visited": ["nap"]}

    graph = StateGraph(SleepyState, input_schema=SleepyInput)
    graph.add_sequence([_step("first"), nap, _step("last")])
    graph.add_edge(START, "first")
    graph.add_edge("last", END)
    return graph
