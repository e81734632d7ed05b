"""Every bad input gets a clean refusal and creates nothing: a 4xx in the API's one error shape,
an error on the admin form, a one-line error and a non-zero exit from a command."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from observability.models import ApiKey, IdempotentRequest
from pipeline.models import AuditRecord, PipelineRun, RunStatus, StageExecution
from tests.api.conftest import integration_key
from tests.conftest import manage
from tests.console import OPERATOR_PERMS, login, make_run, staff_user

pytestmark = pytest.mark.django_db

QUESTION = "Label the parts of a plant cell"
DEEP = "[" * 10_000 + "]" * 10_000  # beyond what a JSON parser's recursion reaches
NESTED = json.loads("[" * 100 + "]" * 100)  # parses, but deeper than any graph needs
TOO_BIG = 3 * 1024 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE is 2.5 MiB


@pytest.fixture
def runs():
    """For each action, a run it would succeed on with a good body."""
    return {
        "failed": make_run(status=RunStatus.FAILED, stages=3, failed_at=3),
        "pending": make_run(status=RunStatus.PENDING, stages=0),
        "interrupted": make_run(status=RunStatus.INTERRUPTED, stages=2),
    }


def everything() -> tuple:
    return (
        sorted(PipelineRun.objects.values_list("pk", "status", "cancel_requested", "input")),
        StageExecution.objects.count(),
        AuditRecord.objects.count(),
        IdempotentRequest.objects.count(),
        ApiKey.objects.count(),
    )


# The API: each write endpoint with a good body, then a table of bad ones -------------------


def write_endpoints(runs) -> dict[str, tuple[str, dict]]:
    failed, pending, interrupted = runs["failed"].pk, runs["pending"].pk, runs["interrupted"].pk
    return {
        "start": ("/api/runs", {"graph": "gamed", "input": {"question": QUESTION}}),
        "retry": (f"/api/runs/{failed}/retry", {"from_stage": "router"}),
        "rerun": (f"/api/runs/{failed}/rerun", {}),
        "cancel": (f"/api/runs/{pending}/cancel", {}),
        "resume": (f"/api/runs/{interrupted}/resume", {}),
        "bulk-retry": ("/api/runs/bulk-retry", {}),
    }


def encode(body: dict) -> bytes:
    return json.dumps(body).encode()


def with_nul(body: dict) -> dict:
    return {**body, "reason": "why\x00not"}


JSON = "application/json"
INVALID = (422, "invalid_request")
UNSUPPORTED = (415, "unsupported_media_type")
BAD_BODIES = {
    # what is wrong: (the body, made from a good one; its content type; status and code)
    "a JSON array": (lambda good: b"[]", JSON, INVALID),
    "a JSON string": (lambda good: b'"x"', JSON, INVALID),
    "null": (lambda good: b"null", JSON, INVALID),
    "no body": (lambda good: b"", JSON, INVALID),
    "malformed JSON": (lambda good: b'{"reason": ', JSON, INVALID),
    "not UTF-8": (lambda good: b'{"reason": "\xff"}', JSON, INVALID),
    "text/plain": (lambda good: encode(good), "text/plain", UNSUPPORTED),
    "form-encoded": (lambda good: b"reason=x", "application/x-www-form-urlencoded", UNSUPPORTED),
    "an unknown field": (lambda good: encode({**good, "reasn": "typo"}), JSON, INVALID),
    "a NUL character": (lambda good: encode(with_nul(good)), JSON, INVALID),
    "deep nesting": (lambda good: encode({**good, "reason": NESTED}), JSON, INVALID),
    "nesting no parser survives": (lambda good: f'{{"reason": {DEEP}}}'.encode(), JSON, INVALID),
    "too large": (
        lambda good: encode({**good, "reason": "x" * TOO_BIG}),
        JSON,
        (413, "request_too_large"),
    ),
}


@pytest.fixture
def key(db) -> str:
    return integration_key()


@pytest.mark.parametrize("endpoint", ["start", "retry", "rerun", "cancel", "resume", "bulk-retry"])
def test_every_bad_body_on_every_write_endpoint_is_a_clean_4xx_that_creates_nothing(
    runs, key, endpoint
):
    path, good = write_endpoints(runs)[endpoint]
    client = Client()
    before = everything()
    for name, (body, content_type, expected) in BAD_BODIES.items():
        response = client.post(path, body(good), content_type=content_type, HTTP_X_API_KEY=key)

        assert (response.status_code, response.json()["code"]) == expected, name
        assert response.json()["detail"], name
        assert everything() == before, name

    # The same endpoint takes the good body: the refusals were about the input.
    response = client.post(path, json.dumps(good), content_type="application/json",
                           HTTP_X_API_KEY=key)  # fmt: skip
    assert response.status_code in (200, 201), response.content


@pytest.mark.parametrize("endpoint", ["start", "retry"])
@pytest.mark.parametrize("idempotency_key", ["a\x00b", "x" * 256, "caf\u00e9"])
def test_a_bad_idempotency_key_is_refused_and_creates_nothing(runs, key, endpoint, idempotency_key):
    path, good = write_endpoints(runs)[endpoint]
    before = everything()

    response = Client().post(path, json.dumps(good), content_type="application/json",
                             HTTP_X_API_KEY=key, HTTP_IDEMPOTENCY_KEY=idempotency_key)  # fmt: skip

    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    assert everything() == before


def test_api_errors_have_the_statuses_the_readme_gives_and_never_html(runs, key):
    session = login(staff_user("staff", *OPERATOR_PERMS), enforce_csrf_checks=True)
    anonymous = Client(enforce_csrf_checks=True)
    keyed = Client(enforce_csrf_checks=True, HTTP_X_API_KEY=key)
    body = json.dumps({"graph": "gamed", "input": {"question": QUESTION}})
    before = everything()
    cases = [
        (anonymous.post("/api/runs", body, content_type="application/json"), 401, "unauthorized"),
        (session.post("/api/runs", body, content_type="application/json"), 403, "csrf_failed"),
        (keyed.post("/api/runs/not-a-uuid/cancel", "{}", content_type="application/json"),
         404, "not_found"),
        (keyed.delete("/api/runs"), 405, "method_not_allowed"),
        (keyed.put(f"/api/runs/{runs['failed'].pk}/retry", "{}"), 405, "method_not_allowed"),
        (keyed.get("/api/nowhere"), 404, "not_found"),
        (keyed.get("/api/runs/x/stages/99999999999999999999"), 404, "not_found"),
        (keyed.get(f"/api/runs/{runs['failed'].pk}/stages/99999999999999999999"), 422,
         "invalid_request"),
        (keyed.get(f"/api/runs/{runs['failed'].pk}/logs", {"stage_order": 2**40}), 422,
         "invalid_request"),
        (keyed.get("/api/runs", HTTP_HOST="elsewhere.example"), 400, "bad_request"),
    ]  # fmt: skip
    for response, status, code in cases:
        assert response["Content-Type"].startswith("application/json"), response.content[:80]
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert everything() == before
    assert "POST" in cases[4][0]["Allow"]


# Admin forms ------------------------------------------------------------------------------


BAD_JSON_TEXT = {
    "a NUL character": '{"question": "why\\u0000not"}',
    "deep nesting": json.dumps({"question": QUESTION, "extra": NESTED}),
    "nesting no parser survives": '{"question": ' + DEEP + "}",
    "malformed JSON": '{"question": ',
    "not an object": "[1, 2]",
}


@pytest.mark.parametrize("name", BAD_JSON_TEXT)
def test_admin_start_form_refuses_bad_input_and_starts_nothing(operator_client, runs, name):
    before = everything()

    response = operator_client.post(
        reverse("admin:pipeline_pipelinerun_start"),
        {"graph": "gamed", "input": BAD_JSON_TEXT[name]},
    )

    assert response.status_code == 400
    assert "errorlist" in response.text
    assert everything() == before


@pytest.mark.parametrize("name", BAD_JSON_TEXT)
def test_admin_retry_form_refuses_a_bad_state_patch_and_creates_nothing(
    operator_client, runs, name
):
    failed = runs["failed"]
    before = everything()

    response = operator_client.post(
        reverse("admin:pipeline_pipelinerun_retry", args=[failed.pk]),
        {
            "stage": failed.stages.last().pk,
            "state_patch": BAD_JSON_TEXT[name].replace('"question"', '"route"'),
            "_confirm": "1",
        },
    )

    assert response.status_code == 400
    assert "errorlist" in response.text
    assert everything() == before


@pytest.mark.parametrize("action", ["cancel", "resume", "rerun"])
def test_admin_action_reasons_refuse_nul_and_change_nothing(operator_client, runs, action):
    run = {"cancel": "pending", "resume": "interrupted", "rerun": "failed"}[action]
    before = everything()

    response = operator_client.post(
        reverse(f"admin:pipeline_pipelinerun_{action}", args=[runs[run].pk]),
        {"reason": "why\x00not", "_confirm": "1"},
    )

    assert response.status_code == 400
    assert everything() == before


@pytest.mark.parametrize("name", ["n" * 101, "why\x00not", "  "])
def test_admin_refuses_a_bad_api_key_name_and_makes_no_key(db, name):
    keeper = staff_user("keeper")
    keeper.user_permissions.add(*Permission.objects.filter(codename="add_apikey"))
    before = everything()

    response = login(keeper).post(
        reverse("admin:observability_apikey_add"),
        {"name": name, "owner": keeper.pk, "scope": "write"},
    )

    assert response.status_code == 400
    assert everything() == before


def test_an_admin_post_over_the_size_limit_is_refused(operator_client, runs):
    before = everything()

    response = operator_client.post(
        reverse("admin:pipeline_pipelinerun_start"),
        {"graph": "gamed", "input": json.dumps({"question": "x" * TOO_BIG})},
    )

    assert 400 <= response.status_code < 500
    assert everything() == before


# Commands ---------------------------------------------------------------------------------

BAD_COMMANDS = [
    ("start_run", ["gamed", "--input", '{"question": "why\\u0000not"}']),
    ("start_run", ["gamed", "--input", '{"question": ' + DEEP + "}"]),
    ("start_run", ["gamed", "--input", json.dumps({"question": QUESTION, "x": NESTED})]),
    ("start_run", ["g" * 500, "--input", json.dumps({"question": QUESTION})]),
    ("retry_run", ["{failed}", "--from-stage", "router", "--patch", '{"route": "a\\u0000"}']),
    ("retry_run", ["{failed}", "--from-stage", "router", "--patch", DEEP]),
    ("retry_run", ["{failed}", "--stage-execution", "100000000000000000000"]),
    ("retry_run", ["{failed}", "--from-stage", "s" * 500]),
    ("runs", ["--limit", "1e20"]),
    ("runs", ["--limit", "100000000000000000000"]),
    ("runs", ["--limit", "0"]),
    ("show_run", ["\x00"]),
    ("show_run", ["%"]),
    ("cancel_run", ["r" * 5000]),
    ("resume_run", ["{failed}"]),
    ("rerun_run", ["{pending}"]),
    ("prune_checkpoints", ["--older-than", "1e20d"]),
    ("prune_checkpoints", ["--older-than", "inf"]),
    ("prune_checkpoints", ["--batch-size", "100000000000000000000"]),
    ("create_api_key", ["--name", "n" * 500, "--owner", "operator"]),
    ("create_api_key", ["--name", "ci", "--owner", "o" * 500]),
    ("create_api_key", ["--name", "ci", "--owner", "operator", "--scope", "admin"]),
]


@pytest.mark.parametrize(("command", "args"), BAD_COMMANDS)
def test_every_command_refuses_bad_input_with_an_error_and_creates_nothing(runs, command, args):
    User.objects.create(username="operator")
    ids = {name: str(run.pk) for name, run in runs.items()}
    args = [arg.format(**ids) if arg.startswith("{") and arg.endswith("}") and len(arg) < 20
            else arg for arg in args]  # fmt: skip
    before = everything()

    with pytest.raises(CommandError):
        call_command(command, *args)

    assert everything() == before


def test_bootstrap_admin_refuses_a_username_the_user_model_refuses(db):
    with pytest.raises(CommandError, match="--username"):
        call_command("bootstrap_admin", "--username", "u" * 500)
    assert not User.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refused_command_exits_non_zero_with_one_line_and_no_traceback():
    result = manage("runs", "--limit", "100000000000000000000")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--limit: must be from 1 to 10000" in result.stderr
