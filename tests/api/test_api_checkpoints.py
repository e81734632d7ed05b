"""A run's LangGraph state history and the state at one checkpoint, through the API."""

import pytest

from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")

FAILING = {
    "question": "Label the parts of a plant cell",
    "faults": {"scene_generator": "fail_once"},
}


def test_checkpoints_are_the_state_history_of_the_runs_thread(api):
    run = start_run(graph="gamed", input=FAILING)

    history = api.get(f"/runs/{run.pk}/checkpoints").json()

    steps = [c["step"] for c in history]
    assert steps == sorted(steps, reverse=True) and steps[-1] == -1
    stages = {s.pk: s for s in run.stages.all()}
    written = [c for c in history if c["written_by_stage_id"]]
    assert len(written) == 4  # the four stages that succeeded before scene_generator failed
    for checkpoint in written:
        assert (
            stages[checkpoint["written_by_stage_id"]].checkpoint_id == checkpoint["checkpoint_id"]
        )
    latest = history[0]
    assert latest["next"] == ["scene_generator"]
    assert latest["parent_checkpoint_id"] == history[1]["checkpoint_id"]


def test_the_state_at_a_checkpoint(api):
    run = start_run(graph="gamed", input=FAILING)
    latest = api.get(f"/runs/{run.pk}/checkpoints").json()[0]

    state = api.get(f"/runs/{run.pk}/checkpoints/{latest['checkpoint_id']}").json()

    assert state["values"]["question"] == FAILING["question"]
    assert state["next"] == ["scene_generator"]
    assert [t["name"] for t in state["tasks"]] == ["scene_generator"]
    assert "InjectedFault" in state["tasks"][0]["error"]


def test_an_unknown_checkpoint_is_404(api):
    run = start_run(graph="gamed", input=FAILING)
    response = api.get(f"/runs/{run.pk}/checkpoints/1f000000-0000-6000-8000-000000000000")
    assert response.status_code == 404 and response.json()["code"] == "checkpoint_not_found"
