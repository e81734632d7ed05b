"""Runs that stop at interrupt() wait for an operator's answer, and continue with it, run by real
`qcluster` workers. The graphs record their own executions: the ledger shows that what ran
before a question does not run again once it is answered."""

import pytest

from pipeline.models import AuditAction, AuditRecord, PipelineRun, RunStatus, StageStatus, Surface
from pipeline.services import Actor, answer_run, start_run
from tests.conftest import manage, wait_for_runs

pytestmark = pytest.mark.worker

WAITING = (RunStatus.WAITING,)
OPERATOR = Actor(label="ann", via=Surface.CLI)


def waiting(run: PipelineRun, workers) -> PipelineRun:
    (run,) = wait_for_runs([run], statuses=WAITING, workers=workers)
    return run


def open_question(run: PipelineRun):
    (question,) = run.questions.filter(answered_at__isnull=True)
    return question


def test_two_questions_approved_then_signed_off(workers, node_ledger):
    workers.start()
    run = waiting(start_run(graph="docs_approval", input={"topic": "tides"}), workers)

    assert run.worker == "" or run.lease_expires_at is None
    assert run.waiting_since is not None
    question = open_question(run)
    assert question.stage_name == "approval"
    assert question.text == "Approve the draft?" and question.choices == ["approve", "reject"]
    assert [(s.stage_name, s.status) for s in run.stages.order_by("stage_order")] == [
        ("write_draft", StageStatus.SUCCEEDED),
        ("approval", StageStatus.WAITING),
    ]

    answer_run(run=run, value="approve", actor=OPERATOR, reason="looks right")
    run = waiting(run, workers)
    assert open_question(run).text == "Who signs it off?"

    answer_run(run=run, value="Ada", actor=OPERATOR)
    (run,) = wait_for_runs([run], workers=workers)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.output["decision"] == "approve" and run.output["signed_by"] == "Ada"
    # What ran before a question ran once; a stage that asked runs again with its answer.
    assert node_ledger.executions(run) == {
        "write_draft": 1,
        "approval": 2,
        "sign_off": 2,
        "publish": 1,
    }
    assert [(s.stage_name, s.status) for s in run.stages.order_by("stage_order")] == [
        ("write_draft", StageStatus.SUCCEEDED),
        ("approval", StageStatus.ANSWERED),
        ("approval", StageStatus.SUCCEEDED),
        ("sign_off", StageStatus.ANSWERED),
        ("sign_off", StageStatus.SUCCEEDED),
        ("publish", StageStatus.SUCCEEDED),
    ]
    answers = AuditRecord.objects.filter(run=run, action=AuditAction.ANSWER).order_by("at")
    assert [(a.actor_label, a.via, a.details["answer"]) for a in answers] == [
        ("ann", "cli", "approve"),
        ("ann", "cli", "Ada"),
    ]
    assert answers[0].reason == "looks right"


def test_rejecting_routes_the_run_to_discard(workers, node_ledger):
    workers.start()
    run = waiting(start_run(graph="docs_approval", input={"topic": "storms"}), workers)

    answer_run(run=run, value="reject", actor=OPERATOR)
    (run,) = wait_for_runs([run], workers=workers)

    assert run.status == RunStatus.SUCCEEDED
    assert run.output["decision"] == "reject" and "signed_by" not in run.output
    assert node_ledger.executions(run) == {"write_draft": 1, "approval": 2, "discard": 1}


def test_parallel_questions_are_answered_one_by_one_and_run_on_together(workers, node_ledger):
    workers.start()
    run = waiting(start_run(graph="docs_parallel_review", input={}), workers)
    questions = {q.stage_name: q for q in run.questions.all()}
    assert set(questions) == {"legal", "finance"}

    answer_run(run=run, value="yes", interrupt_id=questions["legal"].interrupt_id, actor=OPERATOR)
    run.refresh_from_db()
    # The run waits for the other answer: nothing ran again meanwhile.
    assert run.status == RunStatus.WAITING
    assert node_ledger.executions(run) == {"legal": 1, "finance": 1}

    answer_run(run=run, value="no", interrupt_id=questions["finance"].interrupt_id, actor=OPERATOR)
    (run,) = wait_for_runs([run], workers=workers)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert sorted(run.output["verdicts"]) == ["finance: no", "legal: yes"]
    assert node_ledger.executions(run) == {"legal": 2, "finance": 2, "merge": 1}


def test_gamed_review_step_waits_for_approval_and_publishes_an_edited_blueprint(workers):
    workers.start()
    question = {"question": "Label the parts of a plant cell", "review": True}
    approved = waiting(start_run(graph="gamed", input=question), workers)
    edited = waiting(start_run(graph="gamed", input=question), workers)
    asked = open_question(approved)
    assert asked.stage_name == "human_review" and asked.choices == ["approve", "reject"]
    assert asked.value["blueprint"]["template"] == "label_diagram"

    answer_run(run=approved, value="approve", actor=OPERATOR)
    answer_run(run=edited, value={"blueprint": {"title": "Cell parts"}}, actor=OPERATOR)
    approved, edited = wait_for_runs([approved, edited], workers=workers)

    assert approved.status == RunStatus.SUCCEEDED, approved.error_message
    assert approved.output["output"]["review"] == "approved"
    assert edited.output["output"]["review"] == "edited"
    assert edited.output["output"]["game"]["title"] == "Cell parts"
    done = [s.stage_name for s in approved.stages.filter(status=StageStatus.SUCCEEDED)]
    assert done[-2:] == ["human_review", "output_renderer"]


def test_start_run_wait_stops_at_a_question_with_its_own_exit_code(workers, node_ledger):
    workers.start()
    started = manage("start_run", "docs_approval", "--input", '{"topic": "tides"}', "--wait")

    assert started.returncode == 3, started.stdout + started.stderr
    assert "approval asks: Approve the draft?" in started.stdout
    assert 'choices: "approve", "reject"' in started.stdout
    run = PipelineRun.objects.get()

    answered = manage("answer_run", str(run.pk)[:8], "--value", '"approve"', "--wait")
    assert answered.returncode == 3, answered.stdout + answered.stderr
    assert "sign_off asks: Who signs it off?" in answered.stdout

    signed = manage("answer_run", str(run.pk), "--value", '"Ada"', "--reason", "I own it", "--wait")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.output["signed_by"] == "Ada"
    assert AuditRecord.objects.filter(action=AuditAction.ANSWER, via=Surface.CLI).count() == 2
    listed = manage("runs", "--status", "succeeded")
    assert str(run.pk)[:8] in listed.stdout
