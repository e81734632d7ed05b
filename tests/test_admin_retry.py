"""The admin surfaces for "retry from a stage": the run page form, and the two list actions."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from pipeline.models import PipelineRun, RunStatus, StageStatus, Surface
from pipeline.services import Actor, retry_run, start_run

pytestmark = pytest.mark.usefixtures("sync_queue")

QUESTION = "Label the parts of a plant cell"
FAILED_STAGE = "scene_generator"


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="pipeline", codename__in=codenames)
    )
    return user


@pytest.fixture
def operator():
    return staff_user("operator", "view_pipelinerun", "view_stageexecution", "retry_pipelinerun")


@pytest.fixture
def viewer():
    return staff_user("viewer", "view_pipelinerun", "view_stageexecution")


def login(user: User, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(operator):
    return login(operator)


@pytest.fixture
def viewer_client(viewer):
    return login(viewer)


@pytest.fixture
def failed_run():
    run = start_run(
        graph="gamed", input={"question": QUESTION, "faults": {FAILED_STAGE: "fail_once"}}
    )
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    return run


@pytest.fixture
def succeeded_run():
    run = start_run(graph="gamed", input={"question": QUESTION})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    return run


def retry_url(run: PipelineRun) -> str:
    return reverse("admin:pipeline_pipelinerun_retry", args=[run.pk])


def failed_row(run: PipelineRun):
    return run.stages.get(stage_name=FAILED_STAGE, status=StageStatus.FAILED)


def retry_form(run: PipelineRun, button: str = "_preview", **fields) -> dict:
    return {"stage": failed_row(run).pk, "reason": "", "state_patch": "", button: "1", **fields}


def test_operator_sees_the_retry_button_on_a_failed_run(operator_client, failed_run):
    page = operator_client.get(failed_run.admin_path)
    assert page.status_code == 200
    assert "Retry from stage…" in page.text
    assert retry_url(failed_run) in page.text


def test_run_page_shows_lineage_of_a_retry(operator_client, operator, failed_run):
    retry = retry_run(
        run=failed_run,
        from_stage=FAILED_STAGE,
        actor=Actor(user=operator, via=Surface.CLI),
        reason="flaky scene model",
    )
    page = operator_client.get(retry.admin_path)
    assert page.status_code == 200
    assert f'href="{failed_run.admin_path}"' in page.text
    assert "from the stage&#x27;s checkpoint" in page.text
    assert "flaky scene model" in page.text
    assert "operator" in page.text
    parent_page = operator_client.get(failed_run.admin_path)
    assert f'href="{retry.admin_path}"' in parent_page.text


def test_retry_form_preselects_the_failed_stage(operator_client, failed_run):
    page = operator_client.get(retry_url(failed_run))
    assert page.status_code == 200
    row = failed_row(failed_run)
    assert page.context["form"]["stage"].value() == row.pk
    assert f'<option value="{row.pk}" selected>#5 {FAILED_STAGE} (failed)</option>' in page.text
    assert "#1 input_enhancer (succeeded)" in page.text


def test_retry_form_preselects_the_stage_named_in_the_url(operator_client, failed_run):
    first = failed_run.stages.get(stage_order=1)
    page = operator_client.get(retry_url(failed_run), {"stage": first.pk})
    assert page.context["form"]["stage"].value() == first.pk


def test_preview_shows_reused_and_will_run_stages_and_creates_nothing(operator_client, failed_run):
    page = operator_client.post(
        retry_url(failed_run), retry_form(failed_run, state_patch='{"route": "drag_and_drop"}')
    )
    assert page.status_code == 200
    plan = page.context["plan"]
    assert [row.stage_name for row in plan.reused] == [
        "input_enhancer",
        "domain_knowledge_retriever",
        "router",
        "game_planner",
    ]
    assert plan.will_run[0] == FAILED_STAGE
    assert "#4 game_planner" in page.text
    assert "blueprint_generator" in page.text
    assert plan.checkpoint_id in page.text
    assert "from the stage&#x27;s checkpoint" in page.text
    assert "drag_and_drop" in page.text
    assert PipelineRun.objects.count() == 1


def test_confirm_creates_one_child_run_and_redirects_to_it(operator_client, operator, failed_run):
    response = operator_client.post(
        retry_url(failed_run), retry_form(failed_run, "_confirm", reason="model hiccup")
    )
    child = PipelineRun.objects.get(parent_run=failed_run)
    assert response.status_code == 302
    assert response.url == child.admin_path
    assert child.requested_via == Surface.ADMIN
    assert child.requested_by == operator
    assert child.reason == "model hiccup"
    assert child.retry_from_stage == FAILED_STAGE
    assert child.status == RunStatus.SUCCEEDED
    assert PipelineRun.objects.count() == 2
    page = operator_client.get(response.url)
    assert f"new run {child.short_id}" in page.text


def test_viewer_sees_no_retry_button(viewer_client, failed_run):
    page = viewer_client.get(failed_run.admin_path)
    assert page.status_code == 200
    assert "Retry from stage…" not in page.text
    assert retry_url(failed_run) not in page.text


def test_viewer_gets_403_on_the_retry_form(viewer_client, failed_run):
    assert viewer_client.get(retry_url(failed_run)).status_code == 403


def test_viewer_forged_post_is_refused_and_creates_nothing(viewer_client, failed_run):
    response = viewer_client.post(retry_url(failed_run), retry_form(failed_run, "_confirm"))
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1


def test_post_without_csrf_token_is_refused(operator, failed_run):
    client = login(operator, enforce_csrf_checks=True)
    response = client.post(retry_url(failed_run), retry_form(failed_run, "_confirm"))
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1


def test_no_retry_button_on_an_active_run(operator_client, failed_run):
    PipelineRun.objects.filter(pk=failed_run.pk).update(status=RunStatus.RUNNING)
    page = operator_client.get(failed_run.admin_path)
    assert page.status_code == 200
    assert "Retry from stage…" not in page.text


def test_bad_json_patch_shows_an_error_and_creates_nothing(operator_client, failed_run):
    page = operator_client.post(
        retry_url(failed_run), retry_form(failed_run, "_confirm", state_patch="{route: x")
    )
    assert page.status_code == 400  # refused, the form shown again
    assert "It is not valid JSON" in page.text
    assert PipelineRun.objects.count() == 1


def test_patch_that_is_not_an_object_shows_an_error(operator_client, failed_run):
    page = operator_client.post(
        retry_url(failed_run), retry_form(failed_run, "_confirm", state_patch="[1, 2]")
    )
    assert "must be a JSON object" in page.text
    assert PipelineRun.objects.count() == 1


def test_patch_with_an_unknown_key_shows_the_refusal_and_creates_nothing(
    operator_client, failed_run
):
    page = operator_client.post(
        retry_url(failed_run), retry_form(failed_run, "_confirm", state_patch='{"colour": "red"}')
    )
    assert page.status_code == 400  # refused, the form shown again
    assert "Retry refused" in page.text
    assert "state_patch keys are not channels" in page.text
    assert "colour" in page.text
    assert PipelineRun.objects.count() == 1


def test_retry_of_a_run_at_max_depth_shows_the_refusal(operator_client, failed_run, settings):
    settings.GAMED_MAX_RETRY_DEPTH = 1
    child = retry_run(run=failed_run, from_stage=FAILED_STAGE)
    child.refresh_from_db()
    page = operator_client.post(
        retry_url(child),
        {"stage": child.stages.order_by("stage_order").last().pk, "_confirm": "1"},
    )
    assert page.status_code == 400  # refused, the form shown again
    assert "GAMED_MAX_RETRY_DEPTH is 1" in page.text
    assert PipelineRun.objects.count() == 2


def test_stage_of_another_run_is_not_a_choice(operator_client, failed_run, succeeded_run):
    other = succeeded_run.stages.first()
    page = operator_client.post(retry_url(failed_run), retry_form(failed_run, stage=other.pk))
    assert page.status_code == 400  # refused, the form shown again
    assert page.context["form"].errors["stage"]
    assert page.context["plan"] is None


def test_bulk_action_retries_failed_runs_and_reports_skipped_ones(
    operator_client, operator, failed_run, succeeded_run
):
    response = operator_client.post(
        reverse("admin:pipeline_pipelinerun_changelist"),
        {
            "action": "retry_from_failed_stage",
            "index": 0,
            "_selected_action": [failed_run.pk, succeeded_run.pk],
        },
        follow=True,
    )
    assert response.status_code == 200
    child = PipelineRun.objects.get(parent_run=failed_run)
    assert child.retry_from_stage == FAILED_STAGE
    assert child.requested_via == Surface.ADMIN
    assert child.requested_by == operator
    assert not PipelineRun.objects.filter(parent_run=succeeded_run).exists()
    [message] = [str(m) for m in response.context["messages"]]
    assert "Retried 1 run:" in message
    assert child.admin_path in message
    assert f"Skipped 1: {succeeded_run.short_id} (no failed stage)" in message


@pytest.mark.parametrize(
    ("retry_status", "reason"),
    [(RunStatus.RUNNING, "already retried"), (RunStatus.SUCCEEDED, "already recovered")],
)
def test_bulk_action_skips_a_run_already_retried(operator_client, failed_run, retry_status, reason):
    # Admin and the API's bulk retry take the same runs: not one whose retry is under way or
    # has already fixed it.
    earlier = retry_run(run=failed_run, from_stage=FAILED_STAGE)
    PipelineRun.objects.filter(pk=earlier.pk).update(status=retry_status)
    response = operator_client.post(
        reverse("admin:pipeline_pipelinerun_changelist"),
        {"action": "retry_from_failed_stage", "index": 0, "_selected_action": [failed_run.pk]},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert "Retried 0 runs." in message
    assert f"{failed_run.short_id} (Run {failed_run.pk} was {reason}" in message
    assert PipelineRun.objects.filter(parent_run=failed_run).count() == 1


def test_viewer_cannot_run_the_bulk_action(viewer_client, failed_run):
    viewer_client.post(
        reverse("admin:pipeline_pipelinerun_changelist"),
        {"action": "retry_from_failed_stage", "index": 0, "_selected_action": [failed_run.pk]},
    )
    assert PipelineRun.objects.count() == 1


def test_stage_action_retries_from_the_selected_stage(operator_client, operator, failed_run):
    row = failed_run.stages.get(stage_name="game_planner")
    response = operator_client.post(
        reverse("admin:pipeline_stageexecution_changelist"),
        {"action": "retry_from_this_stage", "index": 0, "_selected_action": [row.pk]},
        follow=True,
    )
    child = PipelineRun.objects.get(parent_run=failed_run)
    assert child.retry_from_stage == "game_planner"
    assert child.requested_by == operator
    assert child.requested_via == Surface.ADMIN
    assert child.status == RunStatus.SUCCEEDED
    assert child.stages.filter(status=StageStatus.REUSED).count() == 3
    [message] = [str(m) for m in response.context["messages"]]
    assert "Retried 1 run:" in message and "game_planner" in message


def test_stage_action_reports_rows_the_service_refuses(operator_client, failed_run, settings):
    settings.GAMED_MAX_RETRY_DEPTH = 1
    child = retry_run(run=failed_run, from_stage=FAILED_STAGE)
    row = child.stages.order_by("stage_order").last()
    response = operator_client.post(
        reverse("admin:pipeline_stageexecution_changelist"),
        {"action": "retry_from_this_stage", "index": 0, "_selected_action": [row.pk]},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert "Retried 0 runs." in message
    assert f"Skipped 1: {row} of run {child.short_id}" in message
    assert "GAMED_MAX_RETRY_DEPTH" in message
    assert PipelineRun.objects.count() == 2
