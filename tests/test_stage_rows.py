"""The runner claims runs and writes stage rows through Django's ORM, as any query goes."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from pipeline.models import PipelineRun, RunStatus, StageExecution
from pipeline.runner import RunEnd, claim, write_stage_rows


def test_stage_rows_keep_every_value_and_default_the_rest(db):
    run = PipelineRun.objects.create(graph="gamed", input={})
    started = datetime(2026, 11, 28, 16, 0, 0, 123456, tzinfo=UTC)
    write_stage_rows(
        run.pk,
        {
            1: {
                "stage_name": "router",
                "status": "succeeded",
                "task_id": "t-1",
                "attempt": 2,
                "started_at": started,
                "finished_at": started,
                "duration_ms": 7,
                "input_snapshot": {"question": "Ünïcode ✓", "nested": [1, 2.5, None, True]},
                "logs": [{"level": 20, "message": 'quote " and \\ backslash'}],
                "checkpoint_id": "1f0-b",
                "parent_checkpoint_id": "1f0-a",
                "model_id": "offline",
                "prompt_tokens": 12,
                "cost_usd": Decimal("0.000125"),
            },
            2: {"stage_name": "planner", "status": "running", "task_id": "t-2"},
        },
        {},
    )

    first, second = StageExecution.objects.filter(run=run).order_by("stage_order")
    assert (first.stage_name, first.status, first.attempt) == ("router", "succeeded", 2)
    assert first.started_at == started  # microseconds kept
    assert first.input_snapshot == {"question": "Ünïcode ✓", "nested": [1, 2.5, None, True]}
    assert first.logs == [{"level": 20, "message": 'quote " and \\ backslash'}]
    assert (first.model_id, first.prompt_tokens, first.cost_usd) == (
        "offline",
        12,
        Decimal("0.000125"),
    )
    assert (second.attempt, second.logs, second.checkpoint_id) == (1, [], "")
    assert second.started_at is None and second.reused_from_id is None


def test_a_claimed_run_reads_as_the_orm_reads_it(db):
    run = PipelineRun.objects.create(
        graph="gamed", input={"question": "Label the heart", "nested": [1, {"a": None}]}
    )

    claimed = claim(str(run.pk), "host:1")

    assert claimed == PipelineRun.objects.get(pk=run.pk)
    assert claimed.input == {"question": "Label the heart", "nested": [1, {"a": None}]}
    assert (claimed.status, claimed.worker, claimed.attempts) == ("running", "host:1", 1)
    assert claimed.started_at.tzinfo is not None and claimed.lease_expires_at > claimed.started_at
    # Claimed already: a second claim (a task delivered twice) gets nothing.
    assert claim(str(run.pk), "host:2") is None


def test_a_cancelled_or_finished_run_is_not_claimed(db):
    cancelled = PipelineRun.objects.create(graph="gamed", cancel_requested=True)
    finished = PipelineRun.objects.create(graph="gamed", status=RunStatus.SUCCEEDED)

    assert claim(str(cancelled.pk), "host:1") is None
    assert claim(str(finished.pk), "host:1") is None


def test_claim_rows_and_end_are_queries_djangos_connection_sees(db):
    """So `connection.queries`, `execute_wrapper()` and database instrumentation see them."""
    run = PipelineRun.objects.create(graph="gamed", input={})
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql.split()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), CaptureQueriesContext(connection) as captured:
        claim(str(run.pk), "host:1")
        write_stage_rows(run.pk, {1: {"stage_name": "router", "status": "running"}}, {})
        write_stage_rows(
            run.pk, {}, {1: {"status": "succeeded"}}, RunEnd("host:1", RunStatus.SUCCEEDED)
        )

    assert {"UPDATE", "INSERT", "SELECT"} <= set(seen)
    assert len(captured) >= 4
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.lease_expires_at is None
    assert run.stages.get().status == "succeeded"


def test_an_end_by_a_worker_that_no_longer_holds_the_run_changes_nothing(db):
    run = PipelineRun.objects.create(graph="gamed", input={})
    claim(str(run.pk), "host:1")

    assert RunEnd("host:2", RunStatus.FAILED).write(run.pk) == 0
    run.refresh_from_db()
    assert (run.status, run.worker) == (RunStatus.RUNNING, "host:1")


def test_a_failed_stage_row_write_raises_djangos_error_and_keeps_nothing(db):
    run = PipelineRun.objects.create(graph="gamed", input={})
    write_stage_rows(run.pk, {1: {"stage_name": "router", "status": "running"}}, {})

    with pytest.raises(IntegrityError):  # (run, stage_order) is unique
        write_stage_rows(
            run.pk,
            {1: {"stage_name": "router", "status": "running"}, 2: {"stage_name": "x"}},
            {},
        )
    assert StageExecution.objects.filter(run=run).count() == 1
