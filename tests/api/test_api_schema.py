"""schemathesis against /api/openapi.json, with a read-write key: no server error, and every
response has a documented status and content type and matches its documented schema."""

import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gamed_console.wsgi import application
from observability.models import ApiKey, ApiKeyScope
from pipeline.models import RunStatus
from tests.api.conftest import ALL_PERMS, make_user, recorded_run

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 10


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
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    statuses = set()
    try:
        for case in known_cases(schema, run, run.stages.last(), pending):
            response = case.call_and_validate(headers=headers, checks=CHECKS)
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
                response = case.call_and_validate(headers=headers, checks=CHECKS)
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
