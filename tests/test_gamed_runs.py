"""Runs executed inline (sync queue): stages, checkpoints, failures and the validator loop."""

import pytest

from pipeline.graphs.faults import ledger_counts
from pipeline.graphs.gamed.state import REVIEW_STAGE, STAGES
from pipeline.models import RunStatus, StageStatus
from pipeline.services import start_run
from tests.helpers import assert_stage_checkpoints_match_history

pytestmark = pytest.mark.usefixtures("sync_queue")

LINEAR = [stage for stage in STAGES if stage != REVIEW_STAGE]


def test_run_records_one_stage_per_executed_node_in_order():
    run = start_run(graph="gamed", input={"question": "Label the parts of a plant cell"})
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED
    stages = list(run.stages.order_by("stage_order"))
    assert [s.stage_name for s in stages] == LINEAR
    assert [s.stage_order for s in stages] == list(range(1, 9))
    assert all(s.status == StageStatus.SUCCEEDED and s.checkpoint_id for s in stages)
    assert ledger_counts([run.pk]) == dict.fromkeys(LINEAR, 1)
    assert_stage_checkpoints_match_history(run)
    assert run.output["output"]["template"] == "label_diagram"
    assert run.finished_at >= run.started_at


def test_failing_middle_stage_fails_the_run_and_keeps_earlier_stages():
    run = start_run(
        graph="gamed",
        input={
            "question": "Label the parts of a plant cell",
            "faults": {"game_planner": "fail_always"},
        },
    )
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED
    assert "game_planner: injected failure" in run.error_message
    stages = list(run.stages.order_by("stage_order"))
    assert [s.stage_name for s in stages] == LINEAR[:4]
    failed = stages[-1]
    assert failed.status == StageStatus.FAILED
    assert "InjectedFault" in failed.error_message
    assert "Traceback" in failed.error_traceback and "apply_fault" in failed.error_traceback
    assert failed.checkpoint_id == "" and failed.parent_checkpoint_id
    assert all(s.status == StageStatus.SUCCEEDED and s.checkpoint_id for s in stages[:-1])
    assert ledger_counts([run.pk]).get("scene_generator") is None


def test_validator_loop_records_each_blueprint_generator_execution():
    run = start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"})
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED
    generators = list(run.stages.filter(stage_name="blueprint_generator"))
    assert len(generators) == 2
    assert generators[0].stage_order < generators[1].stage_order
    assert generators[0].checkpoint_id != generators[1].checkpoint_id
    assert run.output["output"]["drafts"] == 2
    assert_stage_checkpoints_match_history(run)


@pytest.mark.parametrize(
    ("question", "template"),
    [
        ("Label the parts of a plant cell", "label_diagram"),
        ("Put the stages of the water cycle in order", "sequencing"),
        ("Sort these into solids, liquids and gases", "sorting"),
        ("Which planet is the largest?", "multiple_choice"),
    ],
)
def test_different_questions_give_different_games(question, template):
    run = start_run(graph="gamed", input={"question": question})
    run.refresh_from_db()

    game = run.output["output"]["game"]
    assert game["template"] == template
    assert 2 <= len(game["items"]) <= 8
    assert run.subject == question


def test_sleep_fault_makes_a_stage_slow():
    run = start_run(
        graph="gamed",
        input={"question": "Label the parts of a plant cell", "faults": {"router": "sleep:0.3"}},
    )
    run.refresh_from_db()

    assert run.stages.get(stage_name="router").duration_ms >= 300
