"""Every chat model call a stage makes is recorded on it: model, tokens, calls and cost."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from observability.models import ApiKey
from pipeline.models import ModelUsage, RunStatus
from pipeline.services import retry_run, start_run
from tests.api.conftest import ApiClient, make_user
from tests.conftest import child_env, manage
from tests.console import VIEW_PERMS, login, staff_user
from tests.helpers import scrape

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


PRICES = {"fake-react": {"input": Decimal(2), "output": Decimal(10)}}


def test_metrics_count_tokens_and_cost_by_graph_stage_and_model_and_only_grow(
    settings, metrics_token
):
    settings.GAMED_MODEL_PRICES = PRICES
    run = start_run(graph="model_react", input=QUESTION)
    run.refresh_from_db()
    agent = {"graph": "model_react", "stage": "agent", "model": "fake-react-1"}
    tools = {"graph": "model_react", "stage": "tools", "model": "fake-dictionary"}

    def sample(name: str, labels: dict, **extra: str) -> float | None:
        return scrape()[name].get(tuple(sorted({**labels, **extra}.items())))

    assert sample("gamed_llm_tokens_total", agent, type="input") == 42
    assert sample("gamed_llm_tokens_total", agent, type="output") == 16
    assert sample("gamed_llm_tokens_total", tools, type="input") == 5
    assert sample("gamed_llm_calls_total", agent) == 2
    assert sample("gamed_llm_cost_usd_total", agent) == pytest.approx(0.000244)
    assert sample("gamed_llm_cost_usd_total", tools) is None

    # A retry from the tool runs it and the agent's last turn again; reused stages add nothing.
    retry_run(run=run, from_stage="tools")

    assert sample("gamed_llm_tokens_total", agent, type="input") == 72
    assert sample("gamed_llm_tokens_total", tools, type="input") == 10
    assert sample("gamed_llm_calls_total", agent) == 3
    assert sample("gamed_llm_cost_usd_total", agent) == pytest.approx(0.000394)


def react_run_retried_from_tools() -> tuple:
    run = start_run(graph="model_react", input=QUESTION)
    run.refresh_from_db()
    retry = retry_run(run=run, from_stage="tools")
    retry.refresh_from_db()
    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    return run, retry


def reader_api() -> ApiClient:
    return ApiClient(ApiKey.objects.create_key(name="read", owner=make_user("reader", "view"))[1])


def test_api_admin_and_show_run_show_usage_per_stage_run_and_lineage(settings):
    settings.GAMED_MODEL_PRICES = PRICES
    run, retry = react_run_retried_from_tools()
    api = reader_api()
    detail = api.get(f"/runs/{retry.pk}").json()
    first_agent = detail["stages"][0]
    assert first_agent["status"] == "reused" and first_agent["model_calls"] == 0
    tool = detail["stages"][1]
    assert tool["model_usage"] == [
        {
            "model": "fake-dictionary",
            "calls": 1,
            "input_tokens": 5,
            "output_tokens": 3,
            "total_tokens": 8,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": None,
        }
    ]
    assert detail["totals"]["prompt_tokens"] == 35 and detail["totals"]["model_calls"] == 2
    assert detail["totals"]["cost_usd"] == pytest.approx(0.00015)
    lineage = detail["lineage_totals"]
    assert (lineage["runs"], lineage["model_calls"], lineage["prompt_tokens"]) == (2, 5, 82)
    assert lineage["cost_usd"] == pytest.approx(0.000394)
    listed = {item["id"]: item["cost_usd"] for item in api.get("/runs").json()["items"]}
    assert listed == {str(run.pk): pytest.approx(0.000244), str(retry.pk): pytest.approx(0.00015)}

    staff = login(staff_user("viewer", *VIEW_PERMS))
    runs_list = staff.get("/admin/pipeline/pipelinerun/").content.decode()
    # $0.000244 and $0.000150
    assert runs_list.count('<td class="field-cost_display">$0.0002</td>') == 2
    page = staff.get(f"/admin/pipeline/pipelinerun/{retry.pk}/change/").content.decode()
    assert "fake-dictionary: 1 call, 5 tokens in, 3 out, no price" in page
    assert "35 in, 12 out, 2 model calls" in page
    assert "113 tokens, $0.0004 over 2 runs" in page
    stats = staff.get("/admin/pipeline/pipelinerun/stats/").content.decode()
    assert 'id="stats-agent"' in stats and "$0.0004" in stats

    out = StringIO()
    call_command("show_run", run.short_id, stdout=out)
    assert "model use  3 calls, 66 tokens (47 in, 19 out), $0.000244" in out.getvalue()


def test_without_prices_every_cost_is_null_not_zero(settings):
    settings.GAMED_MODEL_PRICES = {}
    _, retry = react_run_retried_from_tools()
    api = reader_api()
    detail = api.get(f"/runs/{retry.pk}").json()
    assert detail["totals"]["model_calls"] == 2 and detail["totals"]["cost_usd"] is None
    assert detail["lineage_totals"]["model_calls"] == 5
    assert detail["lineage_totals"]["cost_usd"] is None
    assert {item["cost_usd"] for item in api.get("/runs").json()["items"]} == {None}
    page = login(staff_user("viewer", *VIEW_PERMS)).get(retry.admin_path).text
    assert "113 tokens over 2 runs" in page and "$0.0000" not in page


@pytest.mark.parametrize(
    ("prices", "problem"),
    [
        ("{gpt", "must be a JSON object"),
        ('["gpt-4o"]', "must be a JSON object"),
        ('{"gpt-4o": {"input": 2.5}}', "the price of 'gpt-4o'"),
        ('{"gpt-4o": {"input": -1, "output": 10}}', "non-negative"),
        ('{"gpt-4o": {"input": 2.5, "output": 10, "per_call": 1}}', "the price of 'gpt-4o'"),
    ],
)
def test_a_malformed_price_table_stops_the_console_with_what_is_wrong(prices, problem):
    result = manage("check", env=child_env(GAMED_MODEL_PRICES=prices))

    assert result.returncode != 0
    assert "GAMED_MODEL_PRICES" in result.stderr and problem in result.stderr
