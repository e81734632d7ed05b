"""Waiting runs from every surface: the CLI's exit codes, admin's answer forms and inbox, who may
answer, deadlines, replayed answers, metrics. Runs execute inline (`sync_queue`)."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pipeline.models import AuditAction, AuditRecord, PipelineRun, Question, RunStatus, Surface
from pipeline.selectors import console_runs
from pipeline.services import (
    Actor,
    answer_run,
    expire_waiting_runs,
    prunable_runs,
    reap_runs,
    retry_run,
    start_run,
)
from tests.conftest import manage
from tests.console import OPERATOR_PERMS, VIEW_PERMS, login, staff_user
from tests.helpers import scrape

pytestmark = pytest.mark.usefixtures("sync_queue")

INBOX = "/admin/pipeline/pipelinerun/waiting/"


def waiting_run(graph: str = "docs_approval", **data) -> PipelineRun:
    run = start_run(graph=graph, input={"topic": "tides", **data})
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING, run.error_message
    return run


def answer_url(run: PipelineRun) -> str:
    return reverse("admin:pipeline_pipelinerun_answer", args=[run.pk])


def test_answer_run_refuses_bad_answers_with_one_line_and_exit_1(node_ledger):
    run = waiting_run()

    not_json = manage("answer_run", str(run.pk), "--value", "approve")
    unknown = manage("answer_run", str(run.pk), "--value", '"x"', "--interrupt", "nope")

    assert not_json.returncode == 1 and "--value is not valid JSON" in not_json.stderr
    assert unknown.returncode == 1 and "no open question with interrupt id 'nope'" in unknown.stderr
    assert Question.objects.get().answered_at is None


def test_admin_run_page_answers_with_a_choice_button(node_ledger):
    run = waiting_run()
    client = login(staff_user("operator", *OPERATOR_PERMS))
    page = client.get(run.admin_path)
    assert "Approve the draft?" in page.text and 'class="button answer-choice"' in page.text
    question = run.questions.get()

    response = client.post(
        answer_url(run),
        {"interrupt_id": question.interrupt_id, "choice": json.dumps("reject"), "next": INBOX},
    )

    assert response.status_code == 302 and response.url == INBOX
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.output["decision"] == "reject"
    question.refresh_from_db()
    assert question.answered_by.username == "operator" and question.answered_via == "admin"


def test_admin_answers_with_text_or_json_and_refuses_two_answers_at_once(node_ledger):
    run = waiting_run()
    client = login(staff_user("operator", *OPERATOR_PERMS))
    question = run.questions.get()
    base = {"interrupt_id": question.interrupt_id}

    both = client.post(answer_url(run), {**base, "text": "approve", "answer_json": '"approve"'})
    bad_json = client.post(answer_url(run), {**base, "answer_json": "{nope"})
    assert both.status_code == bad_json.status_code == 302
    assert Question.objects.get().answered_at is None

    client.post(answer_url(run), {**base, "text": "approve"})
    run.refresh_from_db()
    sign_off = run.questions.get(answered_at__isnull=True)
    client.post(answer_url(run), {"interrupt_id": sign_off.interrupt_id, "answer_json": '"Ada"'})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.output["signed_by"] == "Ada"


def test_the_inbox_lists_open_questions_oldest_first_and_the_index_counts_them(node_ledger):
    older = waiting_run(topic="first")
    newer = waiting_run(topic="second")
    viewer = login(staff_user("viewer", *VIEW_PERMS))

    inbox = viewer.get(INBOX)
    index = viewer.get("/admin/")

    assert inbox.status_code == 200
    assert [q.run_id for q in inbox.context["questions"]] == [older.pk, newer.pk]
    assert 'name="interrupt_id"' not in inbox.text  # a viewer sees questions, no answer form
    assert "2 questions" in index.text


def test_answering_needs_the_answer_and_view_permissions(node_ledger):
    run = waiting_run()
    question = run.questions.get()
    body = {"interrupt_id": question.interrupt_id, "text": "approve"}
    without_answer = staff_user("viewer", *VIEW_PERMS)
    without_view = staff_user("answerer", "answer_pipelinerun")

    assert login(without_answer).post(answer_url(run), body).status_code == 403
    assert login(without_view).post(answer_url(run), body).status_code == 403
    assert login(without_view).get(INBOX).status_code == 403
    assert Question.objects.get().answered_at is None


def test_past_its_deadline_a_run_is_cancelled_or_given_its_graphs_default(settings, node_ledger):
    settings.GAMED_INTERRUPT_TIMEOUT = 600
    plain = waiting_run()
    with_default = waiting_run(graph="docs_deadline")

    assert expire_waiting_runs(now=timezone.now() + timedelta(seconds=30)) == []
    expired = expire_waiting_runs(now=timezone.now() + timedelta(seconds=601))

    assert {run.pk for run in expired} == {plain.pk, with_default.pk}
    plain.refresh_from_db()
    with_default.refresh_from_db()
    assert plain.status == RunStatus.CANCELLED
    assert "no answer within 10 min" in plain.error_message
    assert with_default.status == RunStatus.SUCCEEDED
    assert with_default.output["decision"] == "reject"
    system = AuditRecord.objects.filter(via=Surface.SYSTEM, actor_label="deadline")
    assert {record.action for record in system} == {AuditAction.CANCEL, AuditAction.ANSWER}


def test_a_default_answer_the_question_refuses_cancels_its_run_and_spares_the_others(
    settings, node_ledger
):
    settings.GAMED_INTERRUPT_TIMEOUT = 600
    refused = waiting_run(graph="docs_bad_default")
    plain = waiting_run()

    expired = expire_waiting_runs(now=timezone.now() + timedelta(seconds=601))

    assert {run.pk for run in expired} == {refused.pk, plain.pk}
    refused.refresh_from_db()
    plain.refresh_from_db()
    assert refused.status == RunStatus.CANCELLED
    assert "default answer refused" in refused.error_message
    assert plain.status == RunStatus.CANCELLED


def test_a_retry_asks_again_unless_it_replays_the_recorded_answer(node_ledger):
    run = waiting_run()
    answer_run(run=run, value="approve", actor=Actor(label="ann"))
    answer_run(run=run, value="Ada", actor=Actor(label="ann"))
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED

    asks_again = retry_run(run=run, from_stage="sign_off")
    replayed = retry_run(run=run, from_stage="publish", replay_answers=True)
    replayed_sign_off = retry_run(
        run=run, stage_execution_id=_stage(run, "approval"), replay_answers=True
    )

    asks_again.refresh_from_db()
    replayed.refresh_from_db()
    replayed_sign_off.refresh_from_db()
    assert asks_again.status == RunStatus.WAITING
    assert replayed.status == RunStatus.SUCCEEDED
    assert replayed_sign_off.status == RunStatus.SUCCEEDED, replayed_sign_off.error_message
    assert replayed_sign_off.output["signed_by"] == "Ada"
    # A replayed question is still asked (the stage runs up to interrupt()), then answered at
    # once: the stage runs again with the answer, as it would with an operator's.
    assert node_ledger.executions(replayed_sign_off) == {"approval": 2, "sign_off": 2, "publish": 1}
    asked = replayed_sign_off.stages.filter(stage_name="approval").order_by("stage_order")
    assert [(s.status, s.attempt) for s in asked] == [("answered", 1), ("succeeded", 2)]
    record = AuditRecord.objects.filter(run=replayed_sign_off, action=AuditAction.ANSWER).first()
    assert record.actor_label == "replay" and str(run.pk) in record.reason


def test_admin_retry_previews_and_replays_the_recorded_answers(node_ledger):
    run = waiting_run()
    answer_run(run=run, value="approve", actor=Actor(label="ann"))
    answer_run(run=run, value="Ada", actor=Actor(label="ann"))
    client = login(staff_user("operator", *OPERATOR_PERMS))
    url = reverse("admin:pipeline_pipelinerun_retry", args=[run.pk])
    form = {"stage": _stage(run, "approval"), "replay_answers": "on"}

    preview = client.post(url, {**form, "_preview": "Preview"})
    assert 'id="retry-replay"' in preview.text
    assert 'id="retry-replay"' not in client.post(url, {**form, "replay_answers": ""}).text
    client.post(url, {**form, "_confirm": "Confirm retry"})

    retry = PipelineRun.objects.get(parent_run=run)
    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    assert retry.output["signed_by"] == "Ada"


def _stage(run: PipelineRun, name: str) -> int:
    return run.stages.filter(stage_name=name).order_by("-stage_order").first().pk


def test_metrics_show_waiting_runs_and_answers(metrics_token, node_ledger):
    run = waiting_run()

    waiting = scrape()
    assert waiting["gamed_runs"][(("graph", "docs_approval"), ("status", "waiting"))] == 1
    assert waiting["gamed_oldest_waiting_run_age_seconds"][(("graph", "docs_approval"),)] >= 0

    answer_run(run=run, value="reject", actor=Actor(label="ann", via=Surface.API))
    answered = scrape()
    assert answered["gamed_answers_total"][(("graph", "docs_approval"), ("via", "api"))] == 1
    assert not answered.get("gamed_oldest_waiting_run_age_seconds")


def test_reaper_and_retention_leave_a_waiting_run_and_its_lineage_alone(node_ledger):
    run = waiting_run()
    long_ago = timezone.now() - timedelta(days=400)
    PipelineRun.objects.filter(pk=run.pk).update(waiting_since=long_ago, started_at=long_ago)

    assert reap_runs() == []
    assert not prunable_runs(older_than=timedelta(days=1)).exists()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING


def test_progress_counts_a_question_once_not_its_wait(node_ledger):
    run = waiting_run()
    answer_run(run=run, value="reject", actor=Actor(label="ann"))

    listed = console_runs().get(pk=run.pk)

    assert listed.status == RunStatus.SUCCEEDED
    assert (listed.stages_done, listed.stage_count) == (3, 3)  # write_draft, approval, discard
