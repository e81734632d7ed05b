"""Registering graphs as LangGraph users write them, and giving their runs input and context
through every surface: what is accepted, what is refused, and that nothing is queued on refusal.
"""

import json

import pytest

from observability.models import ApiKey, ApiKeyScope
from pipeline.models import PipelineRun
from tests.api.conftest import ALL_PERMS, ApiClient, make_user
from tests.conftest import EXTRA_GRAPHS, child_env, manage
from tests.docs_graphs import SUBGRAPH_STAGES

pytestmark = pytest.mark.django_db

BROKEN = {"broken": "tests.docs_graphs:build_broken"}


@pytest.fixture
def api(db) -> ApiClient:
    owner = make_user("integration", *ALL_PERMS)
    return ApiClient(ApiKey.objects.create_key(name="ci", owner=owner, scope=ApiKeyScope.WRITE)[1])


@pytest.fixture
def broken_graph(settings):
    settings.GAMED_GRAPHS = {**settings.GAMED_GRAPHS, **BROKEN}


def test_a_graph_that_cannot_be_built_is_named_with_its_cause_and_spares_the_others(
    broken_graph, api: ApiClient
):
    listing = api.get("/graphs")
    assert listing.status_code == 200
    graphs = {g["name"]: g for g in listing.json()}
    assert graphs["broken"]["error"] == (
        "Graph 'broken' (tests.docs_graphs:build_broken) cannot be built: "
        "ImportError: No module named 'vendor_sdk'"
    )
    assert graphs["gamed"]["error"] is None and graphs["gamed"]["stages"]

    started = api.post("/runs", {"graph": "broken", "input": {}})
    assert started.status_code == 409
    assert started.json()["code"] == "graph_unavailable"
    assert not PipelineRun.objects.exists()


def test_manage_py_check_reports_a_graph_that_cannot_be_built():
    env = child_env(GAMED_EXTRA_GRAPHS=json.dumps({**EXTRA_GRAPHS, **BROKEN}))

    result = manage("check", env=env)

    assert result.returncode == 0
    assert "pipeline.W001" in result.stderr
    assert "Graph 'broken'" in result.stderr and "No module named 'vendor_sdk'" in result.stderr
    assert manage("check", "--fail-level", "WARNING", env=env).returncode == 1


def test_graph_description_publishes_the_input_and_context_schemas_it_enforces(api):
    chat = api.get("/graphs/docs_chat").json()
    message = chat["input_schema"]["properties"]["messages"]["items"]
    assert {"type": "string"} in message["anyOf"]
    assert chat["input_schema"]["additionalProperties"] is False
    assert chat["context_schema"] is None and chat["subject_field"] == "messages"

    context = api.get("/graphs/docs_context").json()["context_schema"]
    assert context["required"] == ["user_name"]
    assert api.get("/graphs/docs_async").json()["asynchronous"] is True
    assert api.get("/graphs/docs_subgraph").json()["stages"] == SUBGRAPH_STAGES


MESSAGES = [
    [{"role": "user", "content": "hi"}],
    [{"type": "human", "content": "hi"}],
    ["hi"],
    [["user", "hi"]],
]


@pytest.mark.parametrize("messages", MESSAGES)
def test_messages_are_taken_in_every_form_langgraph_takes(api: ApiClient, messages):
    response = api.post("/runs", {"graph": "docs_chat", "input": {"messages": messages}})

    assert response.status_code == 201, response.json()
    assert response.json()["input"] == {"messages": messages}
    assert response.json()["subject"] == "hi"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"graph": "docs_chat", "input": {"messages": [{"rol": "user"}]}}, "messages.0"),
        ({"graph": "docs_chat", "input": {"mesages": []}}, "unknown field(s) mesages"),
        ({"graph": "docs_context", "input": {}, "context": {"tone": "dry"}}, "user_name"),
        ({"graph": "docs_context", "input": {}, "context": {"user_name": 3}}, "user_name"),
        ({"graph": "docs_chat", "input": {}, "context": {"x": 1}}, "takes no context"),
        ({"graph": "docs_flaky", "input": {"flaky_failures": "two"}}, "flaky_failures"),
    ],
)
def test_bad_input_or_context_is_a_422_and_queues_nothing(api: ApiClient, body, problem):
    response = api.post("/runs", body)

    assert response.status_code == 422, response.json()
    assert problem in response.json()["detail"]
    assert not PipelineRun.objects.exists()


def test_context_is_stored_apart_from_the_input(api: ApiClient):
    response = api.post(
        "/runs", {"graph": "docs_context", "input": {}, "context": {"user_name": "Ada"}}
    )

    assert response.status_code == 201
    run = PipelineRun.objects.get()
    assert run.input == {} and run.context == {"user_name": "Ada", "tone": "friendly"}
    assert response.json()["context"] == run.context


def test_start_run_command_takes_context_from_an_option_or_a_file(tmp_path, transactional_db):
    path = tmp_path / "context.json"
    path.write_text('{"user_name": "Grace", "tone": "dry"}')

    inline = manage("start_run", "docs_context", "--input", "{}", "--context", '{"user_name": "A"}')
    from_file = manage("start_run", "docs_context", "--input", "{}", "--context-file", str(path))
    bad = manage("start_run", "docs_context", "--input", "{}", "--context", '{"tone": "dry"}')

    assert inline.returncode == 0 and from_file.returncode == 0, inline.stderr + from_file.stderr
    assert sorted(r.context["user_name"] for r in PipelineRun.objects.all()) == ["A", "Grace"]
    assert bad.returncode == 1
    assert "Invalid context for 'docs_context': user_name: Field required" in bad.stderr
    assert PipelineRun.objects.count() == 2


def test_admin_start_form_takes_messages_and_context(operator_client):
    started = operator_client.post(
        "/admin/pipeline/pipelinerun/start/",
        {
            "graph": "docs_context",
            "input": "{}",
            "context": '{"user_name": "Ada"}',
            "reason": "",
        },
    )
    refused = operator_client.post(
        "/admin/pipeline/pipelinerun/start/",
        {"graph": "docs_context", "input": "{}", "context": '{"tone": 1}', "reason": ""},
    )
    chat = operator_client.post(
        "/admin/pipeline/pipelinerun/start/",
        {"graph": "docs_chat", "input": '{"messages": [{"role": "user", "content": "hi"}]}'},
    )

    assert started.status_code == 302 and chat.status_code == 302
    assert refused.status_code == 400
    assert "user_name" in refused.context["form"].errors["context"][0]
    assert sorted(PipelineRun.objects.values_list("graph", flat=True)) == [
        "docs_chat",
        "docs_context",
    ]


def test_a_run_of_a_graph_that_cannot_be_built_still_shows_its_pages(broken_graph, operator_client):
    run = PipelineRun.objects.create(graph="broken", input={}, status="failed")
    base = f"/admin/pipeline/pipelinerun/{run.pk}"

    page = operator_client.get(f"{base}/change/")
    checkpoints = operator_client.get(f"{base}/checkpoints/")

    assert page.status_code == 200
    assert checkpoints.status_code == 200
    assert "cannot be built" in checkpoints.content.decode()
