"""Retry from a stage: only that stage and later ones run, in a new run on its own thread."""

import pytest
from django.test import override_settings

from pipeline.checkpointer import get_checkpointer
from pipeline.exceptions import Conflict, InvalidInput, RetryNotAllowed, StageNotFound
from pipeline.graphs.faults import ledger_counts
from pipeline.models import PipelineRun, ResumeMode, RunStatus, StageStatus
from pipeline.services import plan_retry, retry_run, start_run
from tests.helpers import (
    checkpoint_history,
    delete_checkpoint,
    snapshot_of_run,
)

pytestmark = pytest.mark.usefixtures("sync_queue")

PLANT = "Label the parts of a plant cell"
AFTER_SCENE = ["scene_generator", "blueprint_generator", "blueprint_validator", "output_renderer"]


def gamed(question=PLANT, **faults) -> PipelineRun:
    run = start_run(graph="gamed", input={"question": question, "faults": faults})
    run.refresh_from_db()
    return run


def retried(run, **kwargs) -> PipelineRun:
    new = retry_run(run=run, **kwargs)
    new.refresh_from_db()
    return new


def test_retry_reruns_only_target_and_later_and_succeeds_after_fail_once():
    parent = gamed(scene_generator="fail_once")
    assert parent.status == RunStatus.FAILED
    before = snapshot_of_run(parent)
    parent_history = set(checkpoint_history(parent))

    retry = retried(parent, from_stage="scene_generator", reason="flaky scene model")

    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    assert ledger_counts([retry.pk]) == dict.fromkeys(AFTER_SCENE, 1)
    assert retry.resume_mode == ResumeMode.CHECKPOINT
    assert retry.parent_run == parent and retry.root_run == parent and retry.retry_depth == 1
    assert retry.retry_from_stage == "scene_generator" and retry.reason == "flaky scene model"
    assert retry.thread_id != parent.thread_id
    stages = list(retry.stages.order_by("stage_order"))
    assert [s.status for s in stages[:4]] == [StageStatus.REUSED] * 4
    assert [s.reused_from.run_id for s in stages[:4]] == [parent.pk] * 4
    assert [s.stage_name for s in stages[4:]] == AFTER_SCENE
    assert (
        stages[4].parent_checkpoint_id
        == parent.stages.get(stage_name="scene_generator").parent_checkpoint_id
    )
    parent.refresh_from_db()
    assert parent.status == RunStatus.FAILED
    assert snapshot_of_run(parent) == before
    assert set(checkpoint_history(parent)) == parent_history


def test_retry_stage_rows_carry_checkpoints_of_the_new_thread():
    parent = gamed(router="fail_once")
    retry = retried(parent, from_stage="router")

    history = checkpoint_history(retry)
    executed = retry.stages.exclude(status=StageStatus.REUSED)
    assert executed.count() == 6
    for stage in executed:
        assert stage.checkpoint_id in history
        assert stage.stage_name in history[stage.parent_checkpoint_id].next


def test_retry_from_second_blueprint_generator_execution_reruns_from_there():
    parent = gamed("Label the bones of the human skeleton")
    first, second = parent.stages.filter(stage_name="blueprint_generator")

    retry = retried(parent, stage_execution_id=second.pk)

    assert retry.status == RunStatus.SUCCEEDED
    assert ledger_counts([retry.pk]) == {
        "blueprint_generator": 1,
        "blueprint_validator": 1,
        "output_renderer": 1,
    }
    reused = retry.stages.filter(status=StageStatus.REUSED)
    assert reused.count() == second.stage_order - 1
    assert reused.filter(reused_from=first).exists()
    assert retry.output["output"]["drafts"] == 2


def test_from_stage_name_means_its_latest_execution():
    parent = gamed("Label the bones of the human skeleton")
    plan = plan_retry(run=parent, from_stage="blueprint_generator")

    assert plan.requested == parent.stages.filter(stage_name="blueprint_generator").last()


def test_retry_of_succeeded_run_regenerates_from_a_stage():
    parent = gamed()
    retry = retried(parent, from_stage="blueprint_generator")

    assert retry.status == RunStatus.SUCCEEDED
    assert ledger_counts([retry.pk]) == {
        "blueprint_generator": 1,
        "blueprint_validator": 1,
        "output_renderer": 1,
    }


def test_retry_of_a_retry_from_a_reused_stage_resumes_from_the_original_thread():
    parent = gamed(scene_generator="fail_once")
    first = retried(parent, from_stage="scene_generator")
    second = retried(first, from_stage="router")

    assert second.status == RunStatus.SUCCEEDED
    assert second.retry_depth == 2 and second.root_run == parent
    assert ledger_counts([second.pk]) == {
        "router": 1,
        "game_planner": 1,
        **dict.fromkeys(AFTER_SCENE, 1),
    }
    assert second.stages.get(stage_order=1).reused_from.run == parent


def test_retry_from_first_stage_is_a_fresh_run_from_the_input():
    parent = gamed(input_enhancer="fail_once")
    retry = retried(parent, from_stage="input_enhancer")

    assert retry.status == RunStatus.SUCCEEDED
    assert retry.resume_mode == ResumeMode.FULL_RERUN
    assert "first stage" in retry.resume_note
    assert not retry.stages.filter(status=StageStatus.REUSED).exists()


def test_missing_stage_checkpoint_falls_back_to_an_earlier_one():
    parent = gamed(scene_generator="fail_once")
    target = parent.stages.get(stage_name="scene_generator")
    assert delete_checkpoint(parent.thread_id, target.parent_checkpoint_id) == 1

    retry = retried(parent, from_stage="scene_generator")

    assert retry.status == RunStatus.SUCCEEDED
    assert retry.resume_mode == ResumeMode.EARLIER_CHECKPOINT
    assert "before game_planner" in retry.resume_note
    assert ledger_counts([retry.pk]) == {"game_planner": 1, **dict.fromkeys(AFTER_SCENE, 1)}


def test_deleted_thread_falls_back_to_a_full_rerun():
    parent = gamed(scene_generator="fail_once")
    get_checkpointer().delete_thread(parent.thread_id)

    plan = plan_retry(run=parent, from_stage="scene_generator")
    retry = retried(parent, from_stage="scene_generator")

    assert plan.resume_mode == ResumeMode.FULL_RERUN
    assert retry.resume_mode == ResumeMode.FULL_RERUN
    assert "No earlier checkpoint is readable" in retry.resume_note
    assert retry.status == RunStatus.SUCCEEDED
    assert sum(ledger_counts([retry.pk]).values()) == 8


def test_state_patch_changes_the_state_the_target_stage_sees():
    parent = gamed(scene_generator="fail_once")
    patch = {
        "game_plan": {
            **parent.stages.get(stage_name="game_planner").output_snapshot["game_plan"],
            "title": "Plant cells, patched",
        }
    }

    plan = plan_retry(run=parent, from_stage="scene_generator", state_patch=patch)
    retry = retried(parent, from_stage="scene_generator", state_patch=patch)

    assert plan.state_diff["game_plan"]["after"]["title"] == "Plant cells, patched"
    target = retry.stages.get(stage_name="scene_generator")
    assert target.input_snapshot["game_plan"]["title"] == "Plant cells, patched"
    assert retry.output["output"]["game"]["title"] == "Plant cells, patched"


def test_plan_retry_writes_nothing():
    parent = gamed(scene_generator="fail_once")
    plan = plan_retry(run=parent, from_stage="scene_generator", state_patch={"question": "Other?"})

    assert PipelineRun.objects.count() == 1
    # What can run after it: the review stage too, which only runs with `review` on.
    assert plan.to_dict()["will_run"] == [*AFTER_SCENE[:-1], "human_review", "output_renderer"]
    assert [s["stage"] for s in plan.to_dict()["reused_stages"]] == [
        "input_enhancer",
        "domain_knowledge_retriever",
        "router",
        "game_planner",
    ]
    assert (
        plan.checkpoint_id == parent.stages.get(stage_name="scene_generator").parent_checkpoint_id
    )
    assert plan.state_diff == {"question": {"before": PLANT, "after": "Other?"}}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"from_stage": "nowhere"}, StageNotFound, "has no stage 'nowhere'"),
        ({"from_stage": "output_renderer"}, StageNotFound, "did not run"),
        ({"stage_execution_id": 999999}, StageNotFound, "not part of run"),
        (
            {"from_stage": "router", "state_patch": {"colour": "red"}},
            InvalidInput,
            "not channels of the 'gamed' state: colour",
        ),
        ({"from_stage": "router", "state_patch": ["x"]}, InvalidInput, "must be a JSON object"),
        ({}, InvalidInput, "Name the stage"),
    ],
)
def test_retry_refuses_bad_targets_and_creates_nothing(kwargs, error, message):
    parent = gamed(scene_generator="fail_always")
    with pytest.raises(error, match=message):
        retry_run(run=parent, **kwargs)
    assert PipelineRun.objects.count() == 1


def test_retry_of_running_run_is_a_conflict():
    run = PipelineRun.objects.create(graph="gamed", input={"question": PLANT}, status="running")
    with pytest.raises(Conflict, match="is running; only a finished run can be retried"):
        retry_run(run=run, from_stage="router")
    assert PipelineRun.objects.count() == 1


@override_settings(GAMED_MAX_RETRY_DEPTH=1)
def test_retry_beyond_max_depth_is_refused_with_the_depth():
    parent = gamed(scene_generator="fail_always")
    child = retried(parent, from_stage="scene_generator")
    with pytest.raises(RetryNotAllowed, match="retry depth 1; GAMED_MAX_RETRY_DEPTH is 1"):
        retry_run(run=child, from_stage="scene_generator")
    assert PipelineRun.objects.count() == 2


def test_retry_refused_when_the_graph_no_longer_has_the_stage():
    parent = gamed(scene_generator="fail_always")
    parent.stages.filter(stage_name="router").update(stage_name="old_router")
    with pytest.raises(RetryNotAllowed, match="stage 'old_router' no longer exists"):
        retry_run(run=parent, from_stage="old_router")
    assert PipelineRun.objects.count() == 1
