"""Actions through the API: cancel, resume, rerun, bulk retry; audit records; idempotency."""

from datetime import timedelta

import pytest
from django.utils import timezone

from observability.models import ApiKey, ApiKeyScope, IdempotentRequest
from pipeline.models import AuditRecord, PipelineRun, RunStatus, Surface
from tests.api.conftest import ApiClient, recorded_run

pytestmark = pytest.mark.django_db

SCENE_FAILED = (
    ("input_enhancer", "succeeded"),
    ("router", "succeeded"),
    ("scene_generator", "failed"),
)


def assert_audited(run, action: str, key: ApiKey) -> None:
    record = AuditRecord.objects.filter(run=run, action=action).get()
    assert record.via == Surface.API and record.actor == key.owner
    assert record.actor_label == key.label


def test_cancel_a_pending_run(api, write_key):
    run = recorded_run(status=RunStatus.PENDING)
    response = api.post(f"/runs/{run.pk}/cancel", {"reason": "wrong input"})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert_audited(run, "cancel", write_key[0])


def test_cancel_a_running_run_asks_it_to_stop(api):
    run = recorded_run(status=RunStatus.RUNNING)
    body = api.post(f"/runs/{run.pk}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True


def test_cancel_a_finished_run_is_409(api):
    run = recorded_run(status=RunStatus.SUCCEEDED)
    response = api.post(f"/runs/{run.pk}/cancel")
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def test_resume_an_interrupted_run(api, write_key):
    run = recorded_run(("input_enhancer", "interrupted"), status=RunStatus.INTERRUPTED)
    response = api.post(f"/runs/{run.pk}/resume", {"reason": "worker restarted"})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "pending" and response.json()["id"] == str(run.pk)
    assert_audited(run, "resume", write_key[0])


def test_resume_a_failed_run_is_409(api):
    run = recorded_run(*SCENE_FAILED)
    response = api.post(f"/runs/{run.pk}/resume")
    assert response.status_code == 409


def test_rerun_starts_a_child_from_the_original_input(api, write_key):
    run = recorded_run(*SCENE_FAILED)
    response = api.post(f"/runs/{run.pk}/rerun", {"reason": "fresh start"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parent_run_id"] == str(run.pk) and body["resume_mode"] == "full_rerun"
    assert body["input"]["question"] == run.input["question"]
    assert_audited(run, "rerun", write_key[0])


def test_actions_on_an_unknown_run_are_404(api):
    for action, body in [
        ("cancel", {}),
        ("resume", {}),
        ("rerun", {}),
        ("retry", {"from_stage": "router"}),
    ]:
        response = api.post(f"/runs/00000000-0000-0000-0000-000000000000/{action}", body)
        assert response.status_code == 404, action
        assert response.json()["code"] == "run_not_found"


def test_bulk_retry_retries_matching_runs_and_says_what_it_skipped(api, write_key):
    scene = [recorded_run(*SCENE_FAILED) for _ in range(3)]
    recorded_run(("router", "failed"))
    recorded_run(("input_enhancer", "succeeded"), status=RunStatus.SUCCEEDED)
    too_deep = recorded_run(*SCENE_FAILED, retry_depth=3)
    no_stage = recorded_run()

    response = api.post("/runs/bulk-retry", {"failed_stage": "scene_generator", "reason": "outage"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["matched"] == 4 and body["remaining"] == 0
    assert {r["run_id"] for r in body["retried"]} == {str(r.pk) for r in scene}
    assert all(r["from_stage"] == "scene_generator" for r in body["retried"])
    assert body["skipped"] == [
        {
            "run_id": str(too_deep.pk),
            "code": "retry_not_allowed",
            "detail": body["skipped"][0]["detail"],
        }
    ]
    assert "GAMED_MAX_RETRY_DEPTH" in body["skipped"][0]["detail"]
    for run in scene:
        child = run.children.get()
        assert child.retry_from_stage == "scene_generator" and child.requested_via == Surface.API
        assert_audited(run, "retry", write_key[0])

    again = api.post("/runs/bulk-retry", {"failed_stage": "scene_generator"}).json()
    assert again["retried"] == [] and again["matched"] == 1

    everything = api.post("/runs/bulk-retry", {}).json()
    skipped = {s["run_id"]: s["code"] for s in everything["skipped"]}
    assert skipped[str(no_stage.pk)] == "no_failed_stage"


def test_bulk_retry_is_capped_and_says_where_to_continue(api):
    runs = [recorded_run(*SCENE_FAILED) for _ in range(4)]
    body = api.post("/runs/bulk-retry", {"limit": 3}).json()
    assert len(body["retried"]) == 3 and body["remaining"] == 1
    rest = api.post("/runs/bulk-retry", {"created_before": body["next_created_before"]}).json()
    assert [r["run_id"] for r in rest["retried"]] == [str(runs[0].pk)]
    assert api.post("/runs/bulk-retry", {"limit": 51}).status_code == 422


def test_create_with_an_idempotency_key_replays_the_first_response(api):
    body = {"graph": "gamed", "input": {"question": "Label a cell"}}
    first = api.post("/runs", body, headers={"Idempotency-Key": "abc-1"})
    again = api.post("/runs", body, headers={"Idempotency-Key": "abc-1"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert PipelineRun.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_422(api):
    api.post(
        "/runs",
        {"graph": "gamed", "input": {"question": "Label a cell"}},
        headers={"Idempotency-Key": "k"},
    )
    response = api.post(
        "/runs",
        {"graph": "gamed", "input": {"question": "Label a heart"}},
        headers={"Idempotency-Key": "k"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert PipelineRun.objects.count() == 1


def test_idempotency_keys_are_scoped_per_caller(api, operator):
    _, other = ApiKey.objects.create_key(name="other", owner=operator, scope=ApiKeyScope.WRITE)
    body = {"graph": "gamed", "input": {"question": "Label a cell"}}
    api.post("/runs", body, headers={"Idempotency-Key": "k"})
    ApiClient(other).post("/runs", body, headers={"Idempotency-Key": "k"})
    assert PipelineRun.objects.count() == 2


def test_a_refusal_is_replayed_too_and_creates_nothing(api):
    body = {"graph": "gamed", "input": {}}
    first = api.post("/runs", body, headers={"Idempotency-Key": "bad"})
    again = api.post("/runs", body, headers={"Idempotency-Key": "bad"})
    assert first.status_code == again.status_code == 422
    assert again.json() == first.json()


def test_a_request_still_in_progress_with_the_same_key_is_409(api):
    body = {"graph": "gamed", "input": {"question": "Label a cell"}}
    api.post("/runs", body, headers={"Idempotency-Key": "busy"})
    IdempotentRequest.objects.update(status_code=None, response=None)  # as if still running

    response = api.post("/runs", body, headers={"Idempotency-Key": "busy"})

    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert PipelineRun.objects.count() == 1


def test_retry_with_an_idempotency_key_creates_one_run(api):
    run = recorded_run(*SCENE_FAILED)
    body = {"from_stage": "scene_generator"}
    first = api.post(f"/runs/{run.pk}/retry", body, headers={"Idempotency-Key": "r1"})
    again = api.post(f"/runs/{run.pk}/retry", body, headers={"Idempotency-Key": "r1"})

    assert first.status_code == again.status_code == 201, first.json()
    assert again.json()["id"] == first.json()["id"]
    assert run.children.count() == 1
    other = api.post(
        f"/runs/{run.pk}/retry", {"from_stage": "router"}, headers={"Idempotency-Key": "r1"}
    )
    assert other.status_code == 422


def test_an_idempotency_key_expires_after_a_day(api):
    body = {"graph": "gamed", "input": {"question": "Label a cell"}}
    api.post("/runs", body, headers={"Idempotency-Key": "daily"})
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = api.post("/runs", body, headers={"Idempotency-Key": "daily"})

    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert PipelineRun.objects.count() == 2 and IdempotentRequest.objects.count() == 1
