"""The API and the CLI retry through the same service, with the documented errors."""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from pipeline.models import PipelineRun, RunStatus, Surface
from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")


@pytest.fixture
def failed_run():
    run = start_run(
        graph="gamed",
        input={
            "question": "Label the parts of a plant cell",
            "faults": {"scene_generator": "fail_once"},
        },
    )
    run.refresh_from_db()
    return run


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    return user


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(staff("operator", "view_pipelinerun", "retry_pipelinerun"))
    return client


def post_retry(client, run_id, **body):
    return client.post(f"/api/runs/{run_id}/retry", body, content_type="application/json")


def test_api_retry_creates_a_child_run(operator_client, failed_run):
    response = post_retry(
        operator_client, failed_run.pk, from_stage="scene_generator", reason="model hiccup"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parent_run_id"] == str(failed_run.pk)
    assert body["status"] == RunStatus.SUCCEEDED
    assert body["resume_mode"] == "checkpoint"
    assert [s["status"] for s in body["stages"]][:4] == ["reused"] * 4
    retry = PipelineRun.objects.get(pk=body["id"])
    assert retry.requested_via == Surface.API and retry.requested_by.username == "operator"
    assert retry.reason == "model hiccup"


def test_api_dry_run_returns_the_plan_and_creates_nothing(operator_client, failed_run):
    response = post_retry(
        operator_client,
        failed_run.pk,
        from_stage="scene_generator",
        dry_run=True,
        state_patch={"question": "Label a plant cell"},
    )

    assert response.status_code == 200
    plan = response.json()
    assert plan["will_run"][0] == "scene_generator"
    assert plan["state_diff"]["question"]["after"] == "Label a plant cell"
    assert PipelineRun.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from_stage": "nowhere"}, 404, "stage_not_found"),
        ({"stage_execution_id": 999999}, 404, "stage_not_found"),
        ({"from_stage": "router", "state_patch": {"colour": "red"}}, 422, "invalid_input"),
        ({"from_stage": "router", "state_patch": "red"}, 422, "invalid_request"),
    ],
)
def test_api_retry_errors(operator_client, failed_run, body, status, code):
    response = post_retry(operator_client, failed_run.pk, **body)

    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["detail"]
    assert PipelineRun.objects.count() == 1


def test_api_retry_unknown_run_is_404(operator_client):
    response = post_retry(
        operator_client, "00000000-0000-0000-0000-000000000000", from_stage="router"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "run_not_found"


def test_api_retry_of_running_run_is_409(operator_client):
    run = PipelineRun.objects.create(graph="gamed", input={"question": "x?"}, status="running")
    response = post_retry(operator_client, run.pk, from_stage="router")
    assert response.status_code == 409
    assert "only a finished run can be retried" in response.json()["detail"]


@override_settings(GAMED_MAX_RETRY_DEPTH=1)
def test_api_retry_beyond_max_depth_is_409(operator_client, failed_run):
    child = post_retry(operator_client, failed_run.pk, from_stage="router").json()
    response = post_retry(operator_client, child["id"], from_stage="router")
    assert response.status_code == 409
    assert response.json()["code"] == "retry_not_allowed"
    assert "GAMED_MAX_RETRY_DEPTH is 1" in response.json()["detail"]


def test_api_needs_a_staff_session(failed_run):
    response = post_retry(Client(), failed_run.pk, from_stage="router")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_api_retry_without_permission_is_403(failed_run):
    client = Client()
    client.force_login(staff("viewer", "view_pipelinerun"))
    response = post_retry(client, failed_run.pk, from_stage="router")
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1


def test_api_session_writes_need_csrf(failed_run):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("operator", "view_pipelinerun", "retry_pipelinerun"))
    response = post_retry(client, failed_run.pk, from_stage="router")
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1


def cli(*args) -> str:
    out = StringIO()
    call_command("retry_run", *args, stdout=out)
    return out.getvalue()


def test_cli_retry_waits_and_reports_the_new_run(failed_run):
    text = cli(
        failed_run.short_id, "--from-stage", "scene_generator", "--wait", "--reason", "nightly"
    )

    retry = failed_run.children.get()
    assert retry.status == RunStatus.SUCCEEDED and retry.requested_via == Surface.CLI
    assert f"Queued retry {retry.pk}" in text
    assert "reused from the earlier run" in text
    assert f"Run {retry.pk} succeeded" in text


def test_cli_dry_run_prints_the_plan_and_creates_nothing(failed_run):
    text = cli(str(failed_run.pk), "--from-stage", "scene_generator", "--dry-run")

    assert "will run:     scene_generator, blueprint_generator" in text
    assert "reused:       input_enhancer, domain_knowledge_retriever, router, game_planner" in text
    assert PipelineRun.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-stage", "nowhere"], "has no stage 'nowhere'"),
        (["--from-stage", "router", "--patch", "{bad"], "--patch is not valid JSON"),
        (["--from-stage", "router", "--patch", '{"colour": 1}'], "not channels"),
    ],
)
def test_cli_retry_refusals(failed_run, args, message):
    with pytest.raises(CommandError, match=message):
        cli(str(failed_run.pk), *args)
    assert PipelineRun.objects.count() == 1


def test_cli_retry_of_running_run_is_refused():
    run = PipelineRun.objects.create(graph="gamed", input={"question": "x?"}, status="running")
    with pytest.raises(CommandError, match="only a finished run can be retried"):
        cli(str(run.pk), "--from-stage", "router")
