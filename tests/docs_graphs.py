"""Graphs written the way LangGraph's documentation writes them, registered beside GamED.

Each node records its own executions (`tests.ledger`) and fails while its name is in the fail
file, so tests can break a stage, fix it and retry.
"""

import asyncio
import datetime
import operator
from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, Send, interrupt
from pydantic import BaseModel

from tests.ledger import fail_if_broken, record


class State(TypedDict, total=False):
    topic: str
    visited: Annotated[list[str], operator.add]


def step(name: str):
    def node(state: State, config: RunnableConfig) -> dict:
        record(config, name)
        fail_if_broken(name)
        return {"visited": [name]}

    return node


def async_step(name: str, pause: float = 0.0):
    async def node(state: dict, config: RunnableConfig) -> dict:
        record(config, name)
        await asyncio.sleep(pause or state.get("pause", 0.0))
        fail_if_broken(name)
        return {"visited": [name]}

    return node


# Async and mixed: fetch (async) -> parse (sync) -> summarize (async, sleeps `pause` seconds).
class AsyncState(State, total=False):
    pause: float


def build_async() -> StateGraph:
    builder = StateGraph(AsyncState)
    builder.add_node("fetch", async_step("fetch"))
    builder.add_node("parse", step("parse"))
    builder.add_node("summarize", async_step("summarize"))
    builder.add_edge(START, "fetch")
    builder.add_edge("fetch", "parse")
    builder.add_edge("parse", "summarize")
    builder.add_edge("summarize", END)
    builder.subject_field = "topic"
    return builder


# A subgraph as a node: prepare -> review (draft -> check -> polish) -> publish.
SUBGRAPH_STAGES = [
    "prepare",
    "review",
    "review > draft",
    "review > check",
    "review > polish",
    "publish",
]


def build_subgraph() -> StateGraph:
    review = StateGraph(State)
    review.add_node("draft", step("draft"))
    review.add_node("check", step("check"))
    review.add_node("polish", async_step("polish", pause=0.0))
    review.add_edge(START, "draft")
    review.add_edge("draft", "check")
    review.add_edge("check", "polish")
    review.add_edge("polish", END)

    builder = StateGraph(State)
    builder.add_node("prepare", step("prepare"))
    builder.add_node("review", review.compile())
    builder.add_node("publish", step("publish"))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    # Returning the compiled graph is fine too: the console uses its StateGraph.
    return builder.compile()


# Parallel branches and map-reduce with Send.
class JokeState(TypedDict, total=False):
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]
    visited: Annotated[list[str], operator.add]


class JokeInput(TypedDict):
    subject: str


def generate_topics(state: JokeState, config: RunnableConfig) -> dict:
    record(config, "generate_topics")
    return {"subjects": state.get("subjects") or ["cats", "dogs", "owls"]}


def continue_to_jokes(state: JokeState) -> list[Send]:
    return [Send("write_joke", {"subject": s}) for s in state["subjects"]]


def write_joke(state: JokeInput, config: RunnableConfig) -> dict:
    name = f"write_joke:{state['subject']}"
    record(config, name)
    fail_if_broken(name)
    return {"jokes": [f"a joke about {state['subject']}"]}


def build_send() -> StateGraph:
    builder = StateGraph(JokeState)
    builder.add_node("generate_topics", generate_topics)
    builder.add_node("write_joke", write_joke)
    builder.add_node("left", step("left"))
    builder.add_node("right", step("right"))
    builder.add_node("best_joke", step("best_joke"))
    builder.add_edge(START, "generate_topics")
    builder.add_conditional_edges("generate_topics", continue_to_jokes, ["write_joke"])
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge(["write_joke", "left", "right"], "best_joke")
    builder.add_edge("best_joke", END)
    return builder


# A node with a RetryPolicy that fails its first `flaky_failures` tries in a run.
class FlakyState(State, total=False):
    flaky_failures: int


def build_flaky() -> StateGraph:
    tries: dict[str, int] = {}

    def flaky(state: FlakyState, config: RunnableConfig) -> dict:
        record(config, "flaky")
        thread = config["configurable"]["thread_id"]
        tries[thread] = tries.get(thread, 0) + 1
        if tries[thread] <= state.get("flaky_failures", 2):
            raise ConnectionError(f"upstream timed out (try {tries[thread]})")
        return {"visited": ["flaky"]}

    builder = StateGraph(FlakyState)
    builder.add_node("flaky", flaky, retry_policy=RetryPolicy(initial_interval=0.01, jitter=False))
    builder.add_node("after", step("after"))
    builder.add_edge(START, "flaky")
    builder.add_edge("flaky", "after")
    builder.add_edge("after", END)
    return builder


# Runtime context.
@dataclass
class Audience:
    user_name: str
    tone: str = "friendly"


class GreetState(TypedDict, total=False):
    greeting: str
    visited: Annotated[list[str], operator.add]


def greet(state: GreetState, runtime: Runtime[Audience], config: RunnableConfig) -> dict:
    record(config, "greet")
    fail_if_broken("greet")
    return {"greeting": f"Hello {runtime.context.user_name} ({runtime.context.tone})"}


def sign(state: GreetState, runtime: Runtime[Audience], config: RunnableConfig) -> dict:
    record(config, "sign")
    fail_if_broken("sign")
    return {"greeting": f"{state['greeting']}, signed for {runtime.context.user_name}"}


def build_context() -> StateGraph:
    builder = StateGraph(GreetState, context_schema=Audience)
    builder.add_node("greet", greet)
    builder.add_node("sign", sign)
    builder.add_edge(START, "greet")
    builder.add_edge("greet", "sign")
    builder.add_edge("sign", END)
    return builder


# Messages, and values JSON has no type for.
def chatbot(state: MessagesState, config: RunnableConfig) -> dict:
    record(config, "chatbot")
    last = state["messages"][-1]
    return {"messages": [AIMessage(content=f"You said: {last.content}")]}


def build_chat() -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("chatbot", chatbot)
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    builder.subject_field = "messages"
    return builder


class BigState(TypedDict, total=False):
    size: int
    blob: str
    raw: bytes
    when: datetime.datetime


def produce(state: BigState, config: RunnableConfig) -> dict:
    record(config, "produce")
    return {
        "blob": "x" * state.get("size", 10),
        "raw": b"\x00\x01" * 8,
        "when": datetime.datetime(2026, 12, 2, 8, 30, tzinfo=datetime.UTC),
    }


def build_big() -> StateGraph:
    builder = StateGraph(BigState)
    builder.add_node("produce", produce)
    builder.add_edge(START, "produce")
    builder.add_edge("produce", END)
    return builder


def build_broken() -> StateGraph:
    raise ImportError("No module named 'vendor_sdk'")


# State holding the graph's own pydantic type (LangGraph's serializer must know it).
class Invoice(BaseModel):
    customer: str
    total: float


class BillingState(TypedDict, total=False):
    customer: str
    invoice: Invoice
    visited: Annotated[list[str], operator.add]


def bill(state: BillingState, config: RunnableConfig) -> dict:
    record(config, "bill")
    return {"invoice": Invoice(customer=state.get("customer", "acme"), total=12.5)}


def send_invoice(state: BillingState, config: RunnableConfig) -> dict:
    record(config, "send_invoice")
    fail_if_broken("send_invoice")
    invoice = state["invoice"]
    assert isinstance(invoice, Invoice), f"the invoice came back as {type(invoice).__name__}"
    return {"visited": [f"sent {invoice.total} to {invoice.customer}"]}


def build_billing() -> StateGraph:
    builder = StateGraph(BillingState)
    builder.add_node("bill", bill)
    builder.add_node("send_invoice", send_invoice)
    builder.add_edge(START, "bill")
    builder.add_edge("bill", "send_invoice")
    builder.add_edge("send_invoice", END)
    return builder


# Human in the loop: an approval, then a sign-off (two questions), as LangGraph's docs write
# them with interrupt() and Command(goto=...).
class ApprovalState(TypedDict, total=False):
    topic: str
    draft: str
    decision: str
    signed_by: str
    visited: Annotated[list[str], operator.add]


def write_draft(state: ApprovalState, config: RunnableConfig) -> dict:
    record(config, "write_draft")
    return {"draft": f"A post about {state.get('topic', 'tides')}"}


def approval(
    state: ApprovalState, config: RunnableConfig
) -> Command[Literal["sign_off", "discard"]]:
    record(config, "approval")
    decision = interrupt(
        {
            "question": "Approve the draft?",
            "choices": ["approve", "reject"],
            "draft": state["draft"],
        }
    )
    return Command(
        goto="sign_off" if decision == "approve" else "discard", update={"decision": decision}
    )


def sign_off(state: ApprovalState, config: RunnableConfig) -> dict:
    record(config, "sign_off")
    return {"signed_by": interrupt({"question": "Who signs it off?"})}


def build_approval() -> StateGraph:
    builder = StateGraph(ApprovalState)
    builder.add_node("write_draft", write_draft)
    builder.add_node("approval", approval)
    builder.add_node("sign_off", sign_off)
    builder.add_node("publish", step("publish"))
    builder.add_node("discard", step("discard"))
    builder.add_edge(START, "write_draft")
    builder.add_edge("write_draft", "approval")
    builder.add_edge("sign_off", "publish")
    builder.add_edge("publish", END)
    builder.add_edge("discard", END)
    builder.subject_field = "topic"
    return builder


# Two reviews asked at once (parallel interrupts), answered separately by interrupt id.
class ReviewState(TypedDict, total=False):
    verdicts: Annotated[list[str], operator.add]
    visited: Annotated[list[str], operator.add]


def reviewer(name: str):
    def node(state: ReviewState, config: RunnableConfig) -> dict:
        record(config, name)
        verdict = interrupt({"question": f"Does {name} approve?", "choices": ["yes", "no"]})
        return {"verdicts": [f"{name}: {verdict}"]}

    return node


def build_parallel_review() -> StateGraph:
    builder = StateGraph(ReviewState)
    builder.add_node("legal", reviewer("legal"))
    builder.add_node("finance", reviewer("finance"))
    builder.add_node("merge", step("merge"))
    builder.add_edge(START, "legal")
    builder.add_edge(START, "finance")
    builder.add_edge(["legal", "finance"], "merge")
    builder.add_edge("merge", END)
    return builder


def build_approval_with_deadline() -> StateGraph:
    """The approval graph, answered "reject" when nobody answers within a minute."""
    builder = build_approval()
    builder.interrupt_timeout = 60
    builder.interrupt_default = "reject"
    return builder


def build_approval_with_unstorable_default() -> StateGraph:
    """The approval graph with a default answer no database can store (a NUL character)."""
    builder = build_approval_with_deadline()
    builder.interrupt_default = "re\x00ject"
    return builder


def build_orm_subgraph() -> StateGraph:
    """A subgraph whose node reads the Django database, as a node of a project might."""

    def count_runs(state: State, config: RunnableConfig) -> dict:
        from pipeline.models import PipelineRun

        record(config, "count_runs")
        return {"visited": [f"{PipelineRun.objects.count()} runs"]}

    inner = StateGraph(State)
    inner.add_node("count_runs", count_runs)
    inner.add_edge(START, "count_runs")
    inner.add_edge("count_runs", END)
    builder = StateGraph(State)
    builder.add_node("lookup", inner.compile())
    builder.add_edge(START, "lookup")
    builder.add_edge("lookup", END)
    return builder
