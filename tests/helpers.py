"""Assertions shared by the test files."""

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from pipeline.graphs import compiled_graph
from pipeline.models import PipelineRun, StageStatus
from pipeline.runner import run_config


def checkpoint_history(run: PipelineRun) -> dict[str, object]:
    """LangGraph's own history of the run's thread, by checkpoint id."""
    graph = compiled_graph(run.graph)
    return {
        snap.config["configurable"]["checkpoint_id"]: snap
        for snap in graph.get_state_history(run_config(run))
    }


def assert_stage_checkpoints_match_history(run: PipelineRun) -> None:
    """Each stage started from the snapshot whose `next` names it, and the `checkpoint_id` of
    each that succeeded is the snapshot LangGraph wrote right after it."""
    history = checkpoint_history(run)
    child_of = {
        snap.parent_config["configurable"]["checkpoint_id"]: cid
        for cid, snap in history.items()
        if snap.parent_config
    }
    for stage in run.stages.order_by("stage_order"):
        before = history[stage.parent_checkpoint_id]
        assert stage.stage_name in before.next, (stage.stage_name, before.next)
        if stage.status == StageStatus.SUCCEEDED:
            assert stage.checkpoint_id == child_of[stage.parent_checkpoint_id], stage.stage_name
        else:
            assert not stage.checkpoint_id, stage.stage_name


def delete_checkpoint(thread_id: str, checkpoint_id: str) -> int:
    """Remove one checkpoint row from the checkpointer, as retention or an accident would."""
    from pipeline.checkpointer import get_checkpointer, is_postgres

    saver = get_checkpointer()
    sql = "DELETE FROM checkpoints WHERE thread_id = {p} AND checkpoint_id = {p}"
    if is_postgres():
        with saver.conn.connection() as conn:
            return conn.execute(sql.format(p="%s"), (thread_id, checkpoint_id)).rowcount
    with saver.lock:
        cursor = saver.conn.execute(sql.format(p="?"), (thread_id, checkpoint_id))
        saver.conn.commit()
        return cursor.rowcount


def snapshot_of_run(run: PipelineRun) -> list[tuple]:
    """Everything about a run's stages that a retry must leave untouched."""
    return list(
        run.stages.order_by("stage_order").values_list(
            "stage_name",
            "stage_order",
            "status",
            "checkpoint_id",
            "parent_checkpoint_id",
            "output_snapshot",
            "error_message",
        )
    )


METRICS_TOKEN = "scrape-token-for-tests"


def scrape() -> dict[str, dict[tuple, float]]:
    """Sample name -> {sorted label items: value}, parsed by prometheus_client's own parser
    (with the `metrics_token` fixture's token)."""
    response = Client().get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples
