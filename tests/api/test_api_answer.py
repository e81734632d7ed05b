"""Answering a waiting run through the API: the answer, its refusals, idempotency, audit."""

import pytest

from pipeline.models import AuditAction, AuditRecord, PipelineRun, RunStatus
from pipeline.services import start_run
from tests.api.conftest import ApiClient, make_user

pytestmark = pytest.mark.usefixtures("sync_queue")


@pytest.fixture
def asking() -> PipelineRun:
    run = start_run(graph="docs_approval", input={"topic": "tides"})
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    return run


def test_a_waiting_run_shows_its_question_and_an_answer_lets_it_continue(api, asking):
    shown = api.get(f"/runs/{asking.pk}").json()
    assert shown["status"] == "waiting" and shown["waiting_since"]
    (question,) = shown["questions"]
    assert question["text"] == "Approve the draft?" and question["choices"] == ["approve", "reject"]
    assert question["stage_name"] == "approval" and question["answer"] is None
    assert [r["id"] for r in api.get("/runs", status="waiting").json()["items"]] == [str(asking.pk)]

    answered = api.post(f"/runs/{asking.pk}/answer", {"value": "reject", "reason": "off topic"})

    assert answered.status_code == 200, answered.json()
    assert answered.json()["status"] == "succeeded"
    (question,) = answered.json()["questions"]
    assert question["answer"] == "reject" and question["answered_via"] == "api"
    assert question["answered_by"].startswith("api key")
    record = AuditRecord.objects.get(action=AuditAction.ANSWER)
    assert record.reason == "off topic" and record.details["answer"] == "reject"


def test_the_same_answer_sent_twice_with_an_idempotency_key_answers_once(api, asking):
    key = {"Idempotency-Key": "answer-1"}
    first = api.post(f"/runs/{asking.pk}/answer", {"value": "approve"}, headers=key)
    again = api.post(f"/runs/{asking.pk}/answer", {"value": "approve"}, headers=key)

    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert AuditRecord.objects.filter(action=AuditAction.ANSWER).count() == 1
    assert PipelineRun.objects.get(pk=asking.pk).status == RunStatus.WAITING  # the sign-off


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"value": "approve", "interrupt_id": "0" * 32}, 409, "conflict"),
        ({"interrupt_id": None}, 422, "invalid_request"),
    ],
)
def test_bad_answers_are_refused_and_change_nothing(api, asking, body, status, code):
    response = api.post(f"/runs/{asking.pk}/answer", body)

    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    asking.refresh_from_db()
    assert asking.status == RunStatus.WAITING
    assert not AuditRecord.objects.filter(action=AuditAction.ANSWER).exists()


def test_an_answer_that_is_not_json_is_422(api, asking):
    response = api.client.post(
        f"/api/runs/{asking.pk}/answer",
        "{value: approve",
        content_type="application/json",
        headers=api._headers({}),
    )
    assert response.status_code in (400, 422)
    assert PipelineRun.objects.get(pk=asking.pk).status == RunStatus.WAITING


def test_a_run_that_is_not_waiting_cannot_be_answered(api, asking):
    api.post(f"/runs/{asking.pk}/answer", {"value": "reject"})

    response = api.post(f"/runs/{asking.pk}/answer", {"value": "approve"})

    assert response.status_code == 409
    assert "only a waiting run can be answered" in response.json()["detail"]


def test_answering_needs_the_answer_permission(asking, db):
    from observability.models import ApiKey, ApiKeyScope

    viewer = make_user("viewer", "view", "retry")
    client = ApiClient(
        ApiKey.objects.create_key(name="v", owner=viewer, scope=ApiKeyScope.WRITE)[1]
    )

    response = client.post(f"/runs/{asking.pk}/answer", {"value": "approve"})

    assert response.status_code == 403
    assert PipelineRun.objects.get(pk=asking.pk).status == RunStatus.WAITING


def test_a_waiting_run_can_be_cancelled_but_not_retried_or_resumed(api, asking):
    assert api.post(f"/runs/{asking.pk}/retry", {"from_stage": "approval"}).status_code == 409
    assert api.post(f"/runs/{asking.pk}/resume", {}).status_code == 409

    cancelled = api.post(f"/runs/{asking.pk}/cancel", {"reason": "not needed"})

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["questions"][0]["answer"] is None
    assert api.get("/runs", status="waiting").json()["items"] == []
