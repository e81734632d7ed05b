"""schemathesis against /api/openapi.json, with a read-write key and every check it has (no
server error; documented statuses, content types, schemas and headers; invalid data refused,
valid data accepted; auth enforced; unsupported methods 405), one operation at a time and in
stateful sequences that follow the schema's links from real runs."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from gamed_console.wsgi import application
from observability import events
from observability.models import ApiKey, ApiKeyScope
from pipeline.models import RunStatus
from pipeline.services import retry_run, start_run
from tests.api.conftest import ALL_PERMS, make_user, recorded_run

EXAMPLES_PER_OPERATION = 10
STATEFUL_SCENARIOS = 50
# A run's input is checked against its graph's own schema, and a retry's state patch against
# the channels of the run's graph, when the request is handled: the OpenAPI schema cannot say
# which inputs a graph takes, so a well-formed request may still be refused with 422
# (`invalid_input`, `unknown_graph`), as docs/api.md documents. So may an answer its question's
# `response_schema` refuses, and any of the three sent again with an Idempotency-Key already
# used for another request (`idempotency_key_reused`). Every other check keeps its default.
SEMANTIC_422 = ["2xx", "401", "403", "404", "409", "422"]


def schema_config(headers: dict) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": headers,  # the caller's own key: probes of missing or bad keys replace it
            # No made-up second key or session cookie beside it: the API refuses two keys.
            "generation": {"with-security-parameters": False},
            "operations": [
                {
                    "include-name": name,
                    "checks": {"positive_data_acceptance": {"expected-statuses": SEMANTIC_422}},
                }
                for name in (
                    "POST /api/runs",
                    "POST /api/runs/{run_id}/retry",
                    "POST /api/runs/{run_id}/answer",
                )
            ],
        }
    )


def test_every_operation_conforms_to_the_schema(db):
    # Called straight through WSGI, Django would close the test's database connection around
    # each request; Django's own test client keeps it open the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    owner = make_user("schemathesis", *ALL_PERMS)
    _, key = ApiKey.objects.create_key(name="fuzz", owner=owner, scope=ApiKeyScope.WRITE)
    run = recorded_run(("input_enhancer", "succeeded"), ("router", "failed"))
    pending = recorded_run(status=RunStatus.PENDING)
    headers = {"X-API-Key": key}
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.json", application, headers=headers, config=schema_config(headers)
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    statuses = set()
    try:
        for case in known_cases(schema, run, run.stages.last(), pending):
            response = case.call_and_validate(headers=headers)
            statuses.add((case.operation.label, response.status_code))
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def conforms(case):
                response = case.call_and_validate(headers=headers)
                statuses.add((case.operation.label, response.status_code))

            conforms()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert {code for _, code in statuses} >= {200, 201, 404, 409, 422}


def known_cases(schema, run, stage, pending) -> list:
    """Requests on rows that exist, which generated ids almost never hit."""
    ids = {"run_id": str(run.pk)}
    return [
        schema["/api/runs/{run_id}"]["GET"].Case(path_parameters=ids),
        schema["/api/runs/{run_id}/stages"]["GET"].Case(path_parameters=ids),
        schema["/api/runs/{run_id}/stages/{stage_id}"]["GET"].Case(
            path_parameters={**ids, "stage_id": stage.pk}
        ),
        schema["/api/runs/{run_id}/checkpoints"]["GET"].Case(path_parameters=ids),
        schema["/api/runs/{run_id}/events"]["GET"].Case(path_parameters=ids),
        schema["/api/runs/{run_id}/retry"]["POST"].Case(
            path_parameters=ids, body={"from_stage": "router", "dry_run": True}
        ),
        schema["/api/runs/{run_id}/retry"]["POST"].Case(
            path_parameters=ids, body={"from_stage": "router"}
        ),
        schema["/api/runs/{run_id}/rerun"]["POST"].Case(path_parameters=ids, body={}),
        schema["/api/runs/{run_id}/resume"]["POST"].Case(path_parameters=ids, body={}),
        schema["/api/runs/{run_id}/cancel"]["POST"].Case(
            path_parameters={"run_id": str(pending.pk)}, body={"reason": "fuzz"}
        ),
        schema["/api/runs"]["POST"].Case(
            body={"graph": "gamed", "input": {"question": "Label the parts of a plant cell"}}
        ),
        schema["/api/runs"]["GET"].Case(query={"root": str(run.pk), "page_size": 100}),
    ]


@pytest.mark.usefixtures("sync_queue")
def test_stateful_sequences_on_real_runs_pass_every_check(monkeypatch):
    """Runs started through the API execute at once (inline queue); schemathesis follows the
    schema's links from them to their stages, checkpoints, logs, events and actions, and
    applies every check it has."""
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 2.0)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    owner = make_user("stateful", *ALL_PERMS)
    _, key = ApiKey.objects.create_key(name="fuzz", owner=owner, scope=ApiKeyScope.WRITE)
    headers = {"X-API-Key": key}
    # Runs that really executed, for the sequences that start from the list of runs.
    question = "Label the parts of a plant cell"
    start_run(graph="gamed", input={"question": question})
    start_run(graph="gamed", input={"question": question, "faults": {"router": "fail_always"}})
    # And a failure a retry recovered, so that `recovery=recovered` lists runs to follow, too.
    flaky = start_run(
        graph="gamed", input={"question": question, "faults": {"router": "fail_once"}}
    )
    flaky.refresh_from_db()
    retry_run(run=flaky, from_stage="router")
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.json", application, headers=headers, config=schema_config(headers)
    )
    answered: set[tuple[str, int]] = set()

    class Workflow(schema.as_state_machine()):
        def after_call(self, response, case):
            super().after_call(response, case)
            answered.add((case.operation.label, response.status_code))

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # Name the key as the caller's own, so that the auth checks probe without it.
            case.validate_response(
                response,
                additional_checks=additional_checks,
                headers=headers,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    try:
        Workflow.run(
            settings=settings(
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=20,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    # Which of the deep calls answer 200 depends on the values the exploration draws (it
    # mutates linked ids too); that the links themselves lead to 200 is the test below.
    reached = {label for label, _status in answered}
    assert {
        "GET /api/runs/{run_id}/stages/{stage_id}",
        "GET /api/runs/{run_id}/checkpoints/{checkpoint_id}",
    } <= reached, sorted(answered)


@pytest.mark.usefixtures("sync_queue")
def test_links_from_runs_lead_to_their_stages_and_checkpoints(client):
    """Each link the schema declares from a run's lists resolves, on a real run, to a request
    that answers 200: what lets clients and the stateful exploration go from a run to a stage
    and to the state at a checkpoint."""
    owner = make_user("linked", *ALL_PERMS)
    _, key = ApiKey.objects.create_key(name="links", owner=owner, scope=ApiKeyScope.READ)
    headers = {"HTTP_X_API_KEY": key}
    run = start_run(graph="gamed", input={"question": "Label the parts of a plant cell"})
    spec = client.get("/api/openapi.json", **headers).json()

    def follow(path: str, link_name: str) -> int:
        listed = client.get(path, **headers)
        assert listed.status_code == 200
        operation = spec["paths"][path_template(path)]["get"]
        link = operation["responses"]["200"]["links"][link_name]
        body = listed.json()
        values = {
            name: resolve(expression, path, body) for name, expression in link["parameters"].items()
        }
        target = link["operationRef"].split("/paths/")[1].rsplit("/", 1)[0]
        target = target.replace("~1", "/").replace("~0", "~").format(**values)
        return client.get(target, **headers).status_code

    def path_template(path: str) -> str:
        return path.replace(str(run.pk), "{run_id}")

    def resolve(expression: str, path: str, body):
        if expression == "$request.path.run_id":
            return str(run.pk)
        pointer = expression.removeprefix("$response.body#/").split("/")
        for part in pointer:
            body = body[int(part)] if isinstance(body, list) else body[part]
        return body

    assert follow(f"/api/runs/{run.pk}/checkpoints", "checkpoint_state") == 200
    assert follow(f"/api/runs/{run.pk}/stages", "stage_detail") == 200
