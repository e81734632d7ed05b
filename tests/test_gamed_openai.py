"""GamED on a real client: langchain-openai over HTTP to an OpenAI-compatible server on loopback.

What the console records is what the server reported; a rate limit is retried by the stage's
RetryPolicy (two tries), a bad request fails the stage with the provider's message, and the
API key is sent to the server and shown nowhere.
"""

import logging
from decimal import Decimal

import pytest

from observability.models import ApiKey
from pipeline.models import ModelUsage, RunStatus, StageStatus
from pipeline.services import start_run
from tests.api.conftest import ApiClient, make_user
from tests.console import VIEW_PERMS, login, staff_user
from tests.openai_server import ChatServer, Reply

pytestmark = pytest.mark.usefixtures("sync_queue")

API_KEY = "sk-test-5e3c1d0a9f8b7e6d5c4b3a29"
MODEL = "gpt-test-2026-01-01"
FLOWER = "Label the parts of a flower"
KNOWLEDGE = Reply(
    {
        "title": "Parts of a flower",
        "subject": "biology",
        "parts": {
            "petal": "colourful leaf that attracts pollinators",
            "sepal": "protects the bud before it opens",
            "stamen": "makes the pollen",
            "pistil": "receives the pollen and holds the ovules",
        },
    },
    prompt_tokens=180,
    completion_tokens=64,
    cached_tokens=128,
)
LABELS = Reply(
    {
        "labels": [
            {"label": "petal", "hint": "attracts pollinators"},
            {"label": "sepal", "hint": "protects the bud"},
            {"label": "stamen", "hint": "makes pollen"},
            {"label": "pistil", "hint": "receives pollen"},
        ]
    },
    prompt_tokens=410,
    completion_tokens=95,
)


@pytest.fixture
def server(settings, monkeypatch):
    chat = ChatServer(MODEL, {"DomainKnowledge": KNOWLEDGE, "LabelDraft": LABELS})
    base_url = chat.start()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    settings.GAMED_CHAT_MODEL = "openai:gpt-test"
    settings.GAMED_CHAT_MODEL_BASE_URL = base_url
    settings.GAMED_MODEL_PRICES = {"gpt-test": {"input": Decimal("0.5"), "output": Decimal(2)}}
    yield chat
    chat.stop()


def test_recorded_usage_is_what_the_server_reported_and_a_rate_limit_takes_two_tries(server):
    server.errors.append((429, "Rate limit reached for gpt-test: retry in 1s."))

    run = start_run(graph="gamed", input={"question": FLOWER})
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    game = run.output["output"]["game"]
    assert [item["label"] for item in game["items"]] == ["petal", "sepal", "stamen", "pistil"]
    knowledge = run.stages.get(stage_name="domain_knowledge_retriever")
    assert knowledge.tries == 2
    assert "RateLimitError" in knowledge.retry_errors[0]["error"]
    assert "Rate limit reached for gpt-test" in knowledge.retry_errors[0]["error"]
    usage = [
        (s.stage_name, s.model_id, s.model_calls, s.prompt_tokens, s.completion_tokens)
        for s in run.stages.filter(model_calls__gt=0).order_by("stage_order")
    ]
    assert usage == [
        ("domain_knowledge_retriever", MODEL, 1, 180, 64),
        ("blueprint_generator", MODEL, 1, 410, 95),
    ]
    assert ModelUsage.objects.get(stage=knowledge).cached_tokens == 128
    # 52 uncached and 128 cached input tokens at $0.5, 64 output tokens at $2 per million.
    assert knowledge.cost_usd == Decimal("0.000218")

    owner = make_user("reader", "view")
    api = ApiClient(ApiKey.objects.create_key(name="read", owner=owner)[1])
    totals = api.get(f"/runs/{run.pk}").json()["totals"]
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (590, 159)
    assert totals["total_tokens"] == 749 and totals["model_calls"] == 2
    assert totals["cost_usd"] == pytest.approx(0.000218 + 0.000395)
    # The client sent the key; three requests: the rate-limited one and its retry, the draft.
    assert [r["headers"]["authorization"] for r in server.requests] == [f"Bearer {API_KEY}"] * 3


def test_a_bad_request_fails_the_stage_at_once_with_the_provider_s_message(server):
    server.errors.append((400, "This model's maximum context length is 8192 tokens."))

    run = start_run(graph="gamed", input={"question": FLOWER})
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED
    failed = run.stages.get(stage_name="domain_knowledge_retriever")
    assert failed.status == StageStatus.FAILED and failed.tries == 1
    assert "Error code: 400" in failed.error_message
    assert "This model's maximum context length is 8192 tokens." in failed.error_message
    assert len(server.requests) == 1


def test_the_model_api_key_never_shows_in_pages_api_output_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.errors.append((429, "Rate limit reached."))
    run = start_run(graph="gamed", input={"question": FLOWER})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message

    staff = login(staff_user("viewer", *VIEW_PERMS))
    owner = make_user("reader", "view")
    api = ApiClient(ApiKey.objects.create_key(name="read", owner=owner)[1])
    seen = [
        staff.get(f"/admin/pipeline/pipelinerun/{run.pk}/change/").content.decode(),
        staff.get("/admin/pipeline/pipelinerun/").content.decode(),
        api.get(f"/runs/{run.pk}").content.decode(),
        *(
            api.get(f"/runs/{run.pk}/stages/{stage.pk}").content.decode()
            for stage in run.stages.all()
        ),
        caplog.text,
        str(list(run.stages.values_list("logs", flat=True))),
    ]
    assert all(page for page in seen)
    assert not [page for page in seen if API_KEY in page or API_KEY[-12:] in page]
