"""Graphs that call LangChain chat models the way LangChain's and LangGraph's documentation
writes them: no node has code for usage, the console records it through its callbacks.

The models are LangChain's fake chat models, answering with the usage a provider reports.
"""

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


def reply(content: str, tokens_in: int, tokens_out: int, model: str, **extra: Any) -> AIMessage:
    return AIMessage(
        content=content,
        usage_metadata={
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        response_metadata={"model_name": model},
        **extra,
    )


# ReAct: the agent asks for a tool (12 in / 7 out), the tool runs (and asks a model itself),
# then the agent answers (30 in / 9 out).
AGENT_TURNS = [
    reply(
        "",
        12,
        7,
        "fake-react-1",
        tool_calls=[{"name": "define", "args": {"word": "tide"}, "id": "call-1"}],
    ),
    reply("A tide is the rise and fall of the sea.", 30, 9, "fake-react-1"),
]


@tool
def define(word: str) -> str:
    """Look up a word's definition."""
    model = FakeMessagesListChatModel(
        responses=[reply(f"{word}: the sea's rise and fall", 5, 3, "fake-dictionary")]
    )
    return model.invoke(f"Define {word}").content


def agent(state: MessagesState) -> dict:
    turn = sum(isinstance(message, AIMessage) for message in state["messages"])
    model = FakeMessagesListChatModel(responses=[AGENT_TURNS[turn]])
    return {"messages": [model.invoke(state["messages"])]}


def build_react() -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([define]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    builder.subject_field = "messages"
    return builder


class StreamingFakeChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that ends its stream with the usage chunk providers send last
    (OpenAI's `stream_usage`)."""

    usage: dict
    model: str

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Iterator:
        yield from super()._stream(messages, *args, **kwargs)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self.usage,
                response_metadata={"model_name": self.model},
            )
        )


def streaming_model(text: str, tokens_in: int, tokens_out: int, cached: int = 0):
    return StreamingFakeChatModel(
        messages=iter([text]),
        model="fake-stream",
        usage={
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "input_token_details": {"cache_read": cached},
            "output_token_details": {"reasoning": 2},
        },
    )


async def outline(state: MessagesState) -> dict:
    model = streaming_model("one two three", 40, 11, cached=16)
    chunks = [chunk async for chunk in model.astream(state["messages"])]
    return {"messages": [AIMessage(content="".join(chunk.content for chunk in chunks))]}


async def write(state: MessagesState) -> dict:
    model = GenericFakeChatModel(
        messages=iter(
            [reply("first part", 20, 5, "fake-stream"), reply("second", 22, 6, "fake-stream")]
        )
    )
    first = await model.ainvoke(state["messages"])
    second = await model.ainvoke(state["messages"])
    return {"messages": [first, second]}


def polish(state: MessagesState) -> dict:
    chunks = list(streaming_model("polished", 8, 4).stream(state["messages"]))
    return {"messages": [AIMessage(content="".join(chunk.content for chunk in chunks))]}


def build_streaming() -> StateGraph:
    """Async and sync nodes that stream, with a subgraph: outline -> draft (write) -> polish."""
    draft = StateGraph(MessagesState)
    draft.add_node("write", write)
    draft.add_edge(START, "write")
    draft.add_edge("write", END)

    builder = StateGraph(MessagesState)
    builder.add_node("outline", outline)
    builder.add_node("draft", draft.compile())
    builder.add_node("polish", polish)
    builder.add_edge(START, "outline")
    builder.add_edge("outline", "draft")
    builder.add_edge("draft", "polish")
    builder.add_edge("polish", END)
    builder.subject_field = "messages"
    return builder
