"""Cancel, resume, rerun and start from the admin: who sees the buttons, who may post."""

import pytest
from django.urls import reverse

from pipeline.models import AuditAction, AuditRecord, PipelineRun, RunStatus, Surface
from tests.console import VIEW_PERMS, login, make_run, staff_user

ACTIONS = ["cancel", "resume", "rerun"]
BUTTON_CLASSES = ["run-action-retry", "run-action-cancel", "run-action-resume", "run-action-rerun"]


def action_url(name: str, run: PipelineRun) -> str:
    return reverse(f"admin:pipeline_pipelinerun_{name}", args=[run.pk])


def buttons_on(client, run: PipelineRun) -> list[str]:
    page = client.get(run.admin_path)
    assert page.status_code == 200
    return [name for name in BUTTON_CLASSES if f'class="{name}"' in page.text]


def state_of_everything() -> tuple:
    return (
        sorted(PipelineRun.objects.values_list("pk", "status", "cancel_requested")),
        AuditRecord.objects.count(),
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RunStatus.PENDING, ["run-action-cancel"]),
        (RunStatus.RUNNING, ["run-action-cancel"]),
        (RunStatus.SUCCEEDED, ["run-action-retry", "run-action-rerun"]),
        (RunStatus.FAILED, ["run-action-retry", "run-action-rerun"]),
        (
            RunStatus.INTERRUPTED,
            ["run-action-retry", "run-action-cancel", "run-action-resume", "run-action-rerun"],
        ),
        (RunStatus.CANCELLED, ["run-action-retry", "run-action-resume", "run-action-rerun"]),
    ],
)
def test_operator_sees_the_buttons_that_apply_to_the_run(operator_client, status, expected):
    run = make_run(status=status, stages=3)
    assert buttons_on(operator_client, run) == expected


@pytest.mark.parametrize("status", list(RunStatus))
def test_view_only_user_sees_no_action_buttons(viewer_client, status):
    run = make_run(status=status, stages=3)
    assert buttons_on(viewer_client, run) == []


def test_each_button_needs_its_own_permission(db):
    canceller = login(staff_user("canceller", *VIEW_PERMS, "cancel_pipelinerun"))
    running = make_run(status=RunStatus.RUNNING, stages=2)
    interrupted = make_run(status=RunStatus.INTERRUPTED, stages=2)
    assert buttons_on(canceller, running) == ["run-action-cancel"]
    assert buttons_on(canceller, interrupted) == ["run-action-cancel"]


def test_no_cancel_button_once_a_cancel_was_requested(operator_client):
    run = make_run(status=RunStatus.RUNNING, stages=2, cancel_requested=True)
    assert buttons_on(operator_client, run) == []
    assert "cancel requested" in operator_client.get(run.admin_path).text


@pytest.mark.parametrize("name", ACTIONS)
def test_action_page_asks_for_confirmation_and_a_reason(operator_client, name):
    status = {"cancel": RunStatus.RUNNING, "resume": RunStatus.INTERRUPTED}.get(
        name, RunStatus.FAILED
    )
    run = make_run(status=status, stages=2)
    before = state_of_everything()
    page = operator_client.get(action_url(name, run))
    assert page.status_code == 200
    assert 'name="reason"' in page.text and 'name="csrfmiddlewaretoken"' in page.text
    assert state_of_everything() == before


def test_cancel_of_a_running_run_asks_the_worker_to_stop(operator_client, operator):
    run = make_run(status=RunStatus.RUNNING, stages=2)
    response = operator_client.post(
        action_url("cancel", run), {"reason": "wrong question"}, follow=True
    )
    run.refresh_from_db()
    assert run.cancel_requested and run.status == RunStatus.RUNNING
    assert response.redirect_chain[-1][0] == run.admin_path
    [message] = [str(m) for m in response.context["messages"]]
    assert "Cancel requested" in message
    record = AuditRecord.objects.get()
    assert (record.action, record.via, record.actor, record.reason, record.run) == (
        AuditAction.CANCEL,
        Surface.ADMIN,
        operator,
        "wrong question",
        run,
    )


def test_cancel_of_a_pending_run_cancels_it_at_once(operator_client):
    run = make_run(status=RunStatus.PENDING, stages=0)
    operator_client.post(action_url("cancel", run), {"reason": ""})
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_resume_of_an_interrupted_run_queues_the_same_run(operator_client, operator):
    run = make_run(status=RunStatus.INTERRUPTED, stages=3)
    response = operator_client.post(action_url("resume", run), {"reason": "worker died"})
    run.refresh_from_db()
    assert response.status_code == 302 and response.url == run.admin_path
    assert run.status == RunStatus.PENDING
    assert PipelineRun.objects.count() == 1
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.via) == (
        AuditAction.RESUME,
        operator,
        Surface.ADMIN,
    )


def test_rerun_starts_a_new_run_in_the_lineage_and_opens_it(operator_client, operator):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    response = operator_client.post(action_url("rerun", run), {"reason": "new model"})
    child = PipelineRun.objects.get(parent_run=run)
    assert response.status_code == 302 and response.url == child.admin_path
    assert (child.requested_by, child.requested_via, child.reason) == (
        operator,
        Surface.ADMIN,
        "new model",
    )
    assert child.retry_depth == 1 and child.input["question"] == run.input["question"]
    page = operator_client.get(response.url)
    assert f"new run {child.short_id}" in page.text


def test_a_refusal_of_the_service_is_shown_and_changes_nothing(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED, stages=2)
    before = state_of_everything()
    response = operator_client.post(action_url("cancel", run), {"reason": ""}, follow=True)
    assert response.redirect_chain[-1][0] == run.admin_path
    [message] = list(response.context["messages"])
    assert message.level_tag == "error"
    assert "only a pending, running, waiting or interrupted run can be cancelled" in str(message)
    assert state_of_everything() == before


@pytest.mark.parametrize("name", [*ACTIONS, "retry"])
def test_forged_post_without_the_permission_gets_403_and_changes_nothing(viewer_client, name):
    run = make_run(
        status=RunStatus.INTERRUPTED if name != "cancel" else RunStatus.RUNNING, failed_at=2
    )
    before = state_of_everything()
    data = {"reason": "forged", "_confirm": "1", "stage": run.stages.first().pk}
    assert viewer_client.post(action_url(name, run), data).status_code == 403
    assert viewer_client.get(action_url(name, run)).status_code == 403
    assert state_of_everything() == before


def test_forged_start_without_the_permission_gets_403_and_starts_nothing(viewer_client):
    url = reverse("admin:pipeline_pipelinerun_start")
    response = viewer_client.post(url, {"graph": "gamed", "input": '{"question": "x"}'})
    assert response.status_code == 403
    assert viewer_client.get(url).status_code == 403
    assert state_of_everything() == ([], 0)


@pytest.mark.parametrize("name", ACTIONS)
def test_admin_posts_without_a_csrf_token_are_refused(operator, name):
    client = login(operator, enforce_csrf_checks=True)
    status = {"cancel": RunStatus.RUNNING, "resume": RunStatus.INTERRUPTED}.get(
        name, RunStatus.FAILED
    )
    run = make_run(status=status, stages=2)
    before = state_of_everything()
    assert client.post(action_url(name, run), {"reason": ""}).status_code == 403
    assert state_of_everything() == before


def test_start_without_a_csrf_token_is_refused(operator):
    client = login(operator, enforce_csrf_checks=True)
    url = reverse("admin:pipeline_pipelinerun_start")
    response = client.post(url, {"graph": "gamed", "input": '{"question": "x"}'})
    assert response.status_code == 403
    assert not PipelineRun.objects.exists()


# Starting a run -------------------------------------------------------------------------------

START = "/admin/pipeline/pipelinerun/start/"


def test_start_link_is_shown_only_with_the_start_permission(operator_client, viewer_client):
    assert START in operator_client.get("/admin/pipeline/pipelinerun/").text
    assert START not in viewer_client.get("/admin/pipeline/pipelinerun/").text
    assert START in operator_client.get("/admin/").text
    assert START not in viewer_client.get("/admin/").text


def test_start_form_offers_the_registered_graphs(operator_client):
    page = operator_client.get(START)
    assert page.status_code == 200
    assert '<option value="gamed" selected>gamed</option>' in page.text
    assert '<option value="test_chain">test_chain</option>' in page.text


def test_start_queues_a_run_and_opens_it(operator_client, operator):
    response = operator_client.post(
        START,
        {
            "graph": "gamed",
            "input": '{"question": "Label the parts of a plant cell"}',
            "reason": "demo",
        },
    )
    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response.url == run.admin_path
    assert (run.graph, run.subject, run.requested_by, run.requested_via, run.reason) == (
        "gamed",
        "Label the parts of a plant cell",
        operator,
        Surface.ADMIN,
        "demo",
    )
    assert run.status == RunStatus.PENDING
    assert AuditRecord.objects.get().action == AuditAction.START


def test_start_with_bad_json_shows_an_error_and_starts_nothing(operator_client):
    page = operator_client.post(START, {"graph": "gamed", "input": '{"question": '})
    assert page.status_code == 400  # refused, the form shown again
    assert "The input is not valid JSON" in page.text
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{}", "question"),
        ('{"question": "x", "faults": {"nope": "fail_always"}}', "nope"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_start_with_input_the_schema_refuses_shows_why(operator_client, text, error):
    page = operator_client.post(START, {"graph": "gamed", "input": text})
    assert page.status_code == 400  # refused, the form shown again
    assert "Not started" in page.text
    assert error in page.context["form"].errors["input"][0]
    assert not PipelineRun.objects.exists()


def test_start_of_an_unknown_graph_is_refused(operator_client):
    page = operator_client.post(START, {"graph": "nope", "input": '{"question": "x"}'})
    assert page.status_code == 400  # refused, the form shown again
    assert page.context["form"].errors["graph"]
    assert not PipelineRun.objects.exists()
