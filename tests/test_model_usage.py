"""Every chat model call a stage makes is recorded on it: model, tokens, calls and cost."""

from decimal import Decimal

import pytest

from pipeline.models import ModelUsage, RunStatus
from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")

QUESTION = {"messages": [["user", "What is a tide?"]]}


def usage_rows(run) -> list[tuple]:
    return [
        (
            s.stage_name,
            s.model_id,
            s.model_calls,
            s.prompt_tokens,
            s.completion_tokens,
            s.total_tokens,
        )
        for s in run.stages.order_by("stage_order")
    ]


def test_react_agent_records_each_agent_stage_and_the_tool_s_own_model_call(settings):
    settings.GAMED_MODEL_PRICES = {"fake-react": {"input": Decimal(2), "output": Decimal(10)}}
    run = start_run(graph="model_react", input=QUESTION)
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert usage_rows(run) == [
        ("agent", "fake-react-1", 1, 12, 7, 19),
        ("tools", "fake-dictionary", 1, 5, 3, 8),
        ("agent", "fake-react-1", 1, 30, 9, 39),
    ]
    first, tools, second = run.stages.order_by("stage_order")
    assert first.cost_usd == Decimal("0.000094")
    assert second.cost_usd == Decimal("0.000150")
    assert tools.cost_usd is None


def test_streamed_async_and_subgraph_calls_are_recorded_on_the_stage_that_made_them():
    run = start_run(graph="model_streaming", input=QUESTION)
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert usage_rows(run) == [
        ("outline", "fake-stream", 1, 40, 11, 51),
        ("draft", "", 0, None, None, None),
        ("draft > write", "fake-stream", 2, 42, 11, 53),
        ("polish", "fake-stream", 1, 8, 4, 12),
    ]
    outline = ModelUsage.objects.get(stage__run=run, stage__stage_name="outline")
    assert (outline.cached_tokens, outline.reasoning_tokens) == (16, 2)
    assert outline.cost_usd is None
