"""Rows the runner writes and reads with its own SQL match what the ORM writes and reads."""

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from pipeline.models import PipelineRun, StageExecution
from pipeline.runner import claim, insert_stages
from tests.conftest import require_postgres


def last_statement() -> str:
    """The text of the last statement Django's connection sent, as Postgres received it."""
    info = connection.connection.info
    # `dsn` leaves the password out.
    with psycopg.connect(info.dsn, password=info.password, autocommit=True) as observer:
        query = "SELECT query FROM pg_stat_activity WHERE pid = %s"
        row = observer.execute(query, [info.backend_pid])
        return row.fetchone()[0]


def test_inserted_stage_rows_keep_every_value_and_default_the_rest(db):
    run = PipelineRun.objects.create(graph="gamed", input={})
    started = datetime(2026, 11, 28, 16, 0, 0, 123456, tzinfo=UTC)
    insert_stages(
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
                "output_snapshot": None,
                "logs": [{"level": 20, "message": 'quote " and \\ backslash'}],
                "checkpoint_id": "1f0-b",
                "parent_checkpoint_id": "1f0-a",
                "model_id": "offline",
                "prompt_tokens": 12,
                "cost_usd": Decimal("0.000125"),
            },
            2: {"stage_name": "planner", "status": "running", "task_id": "t-2"},
        },
    )

    first, second = StageExecution.objects.filter(run=run).order_by("stage_order")
    assert (first.stage_order, first.stage_name, first.status, first.attempt) == (
        1,
        "router",
        "succeeded",
        2,
    )
    assert first.started_at == started and first.finished_at == started  # microseconds kept
    assert first.input_snapshot == {"question": "Ünïcode ✓", "nested": [1, 2.5, None, True]}
    assert first.output_snapshot is None
    assert first.logs == [{"level": 20, "message": 'quote " and \\ backslash'}]
    assert (first.checkpoint_id, first.parent_checkpoint_id) == ("1f0-b", "1f0-a")
    assert (first.model_id, first.prompt_tokens, first.cost_usd) == (
        "offline",
        12,
        Decimal("0.000125"),
    )
    # Fields a row does not set get the model's defaults.
    assert (second.stage_order, second.attempt, second.logs) == (2, 1, [])
    assert second.started_at is None and second.input_snapshot is None
    assert (second.error_message, second.checkpoint_id, second.model_id) == ("", "", "")
    assert second.completion_tokens is None and second.reused_from_id is None


def test_a_claimed_run_reads_as_the_orm_reads_it(db):
    run = PipelineRun.objects.create(
        graph="gamed", input={"question": "Label the heart", "nested": [1, {"a": None}]}
    )

    claimed = claim(str(run.pk), "host:1")

    assert claimed is not None and claimed._state.adding is False
    stored = PipelineRun.objects.get(pk=run.pk)
    for field in PipelineRun._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert claimed.input == {"question": "Label the heart", "nested": [1, {"a": None}]}
    assert (claimed.status, claimed.worker, claimed.attempts) == ("running", "host:1", 1)
    assert claimed.started_at.tzinfo is not None and claimed.lease_expires_at > claimed.started_at
    # Claimed already: a second claim (a task delivered twice) gets nothing.
    assert claim(str(run.pk), "host:2") is None


def test_claim_and_stage_rows_send_their_values_as_parameters_on_postgres(db):
    """Not inlined as literals (Django's cursors bind client-side): every run sends these."""
    require_postgres()
    run = PipelineRun.objects.create(graph="gamed", input={})

    assert claim(str(run.pk), "host:1") is not None
    claim_text = last_statement()
    insert_stages(run.pk, {1: {"stage_name": "router", "status": "running"}})
    insert_text = last_statement()

    assert claim_text.startswith('UPDATE "pipeline_pipelinerun"') and "$1" in claim_text
    assert "host:1" not in claim_text and str(run.pk) not in claim_text
    assert insert_text.startswith('INSERT INTO "pipeline_stageexecution"')
    assert "$1" in insert_text and "router" not in insert_text


def test_a_failed_stage_row_insert_raises_djangos_error_on_postgres(db):
    require_postgres()
    run = PipelineRun.objects.create(graph="gamed", input={})
    insert_stages(run.pk, {1: {"stage_name": "router", "status": "running"}})

    with pytest.raises(IntegrityError), transaction.atomic():  # (run, stage_order) is unique
        insert_stages(run.pk, {1: {"stage_name": "router", "status": "running"}})
    assert StageExecution.objects.filter(run=run).count() == 1
