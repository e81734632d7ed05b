"""Reading a run: times, the run-wide log, links from the graph to stages, JSON trees, the
checkpoints page and its diffs, statistics in pipeline order with their trend."""

import re

import pytest
from django.urls import reverse

from pipeline.graphs.gamed.state import STAGES
from pipeline.models import RunStatus, StageExecution, StageStatus
from pipeline.services import retry_run, start_run
from tests.console import VIEW_PERMS, login, make_run, staff_user
from tests.test_admin_console import queries_for

STATS = "/admin/pipeline/pipelinerun/stats/"
SECONDS_AND_ZONE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def checkpoints_url(run) -> str:
    return reverse("admin:pipeline_pipelinerun_checkpoints", args=[run.pk])


def test_run_page_gives_times_to_the_second_with_zone_and_age(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED, stages=2)
    text = operator_client.get(run.admin_path).text
    started = text.split('<span id="run-started">')[1].split("</span>")[0]
    assert re.search(rf"<time datetime=\"[^\"]+\">{SECONDS_AND_ZONE}</time>", started)
    assert "minutes ago" in started
    assert re.search(rf"Created at:</label>\s*<div class=\"readonly\">{SECONDS_AND_ZONE}", text)


def test_run_page_shows_every_stages_logs_in_one_filterable_table(operator_client):
    run = make_run(status=RunStatus.FAILED, failed_at=3)
    first, _, failed = run.stages.order_by("stage_order")
    first.logs = [{"level": 20, "level_name": "INFO", "logger": "a", "message": "m1", "time": 1}]
    failed.logs = [{"level": 40, "level_name": "ERROR", "logger": "b", "message": "m2", "time": 2}]
    StageExecution.objects.bulk_update([first, failed], ["logs"])

    text = operator_client.get(run.admin_path).text

    log = text.split('<table id="run-log">')[1].split("</table>")[0]
    assert log.index("m1") < log.index("m2")
    assert f'<a href="#stage-{failed.pk}">#3 router</a>' in log
    assert 'data-level="40"' in log and 'id="log-level"' in text and 'id="log-search"' in text
    assert "observability/run-page.js" in text


def test_graph_nodes_link_to_the_latest_execution_of_their_stage(operator_client):
    run = make_run(status=RunStatus.FAILED, failed_at=5)
    failed = run.stages.get(status=StageStatus.FAILED)
    text = operator_client.get(run.admin_path).text
    assert f'<a href="#stage-{failed.pk}" class="graph-stage-link"' in text
    assert text.count('class="graph-stage-link"') == 5


def test_input_and_output_are_drawn_as_json_trees(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED, stages=1, output={"game": {"items": [1, 2]}})
    text = operator_client.get(run.admin_path).text
    assert '<div class="json-tree"><script type="application/json">{"game": {"items": [1, 2]}}' in (
        text
    )
    assert '<pre class="json-source">' in text


@pytest.mark.usefixtures("sync_queue")
def test_checkpoints_page_lists_the_thread_and_diffs_two_checkpoints(operator_client):
    run = start_run(graph="gamed", input={"question": "Label the parts of a plant cell"})
    run.refresh_from_db()
    router = run.stages.get(stage_name="router")

    page = operator_client.get(checkpoints_url(run))

    checkpoints = page.context["checkpoints"]
    assert page.status_code == 200 and len(checkpoints) >= len(STAGES) - 1
    by_stage = {entry.stage.stage_name: entry for entry in checkpoints if entry.stage}
    assert by_stage["router"].id == router.checkpoint_id
    assert f'id="checkpoint-{router.checkpoint_id}"' in page.text
    after_router = by_stage["router"]
    before_router = next(e for e in checkpoints if e.id == router.parent_checkpoint_id)
    diff = operator_client.get(checkpoints_url(run), {"a": before_router.id, "b": after_router.id})
    changed = {change.key for change in diff.context["compared"]["changes"]}
    assert changed and changed <= set(router.output_snapshot)
    assert 'id="checkpoint-diff"' in diff.text


@pytest.mark.usefixtures("sync_queue")
def test_checkpoints_page_diffs_a_retry_against_its_parent(operator_client):
    parent = start_run(
        graph="gamed",
        input={"question": "Order the planets", "faults": {"scene_generator": "fail_once"}},
    )
    parent.refresh_from_db()
    retry = retry_run(run=parent, from_stage="scene_generator")
    retry.refresh_from_db()
    assert retry.status == RunStatus.SUCCEEDED

    page = operator_client.get(checkpoints_url(retry), {"parent": "1"})

    compared = page.context["compared"]
    assert compared["parent"] == parent and compared["after"] == page.context["checkpoints"][0]
    assert "blueprint" in {change.key for change in compared["changes"]}
    assert f'href="{checkpoints_url(parent)}"' in page.text


def test_checkpoints_page_refuses_a_checkpoint_of_another_thread(operator_client):
    run = make_run(status=RunStatus.SUCCEEDED, stages=1)
    page = operator_client.get(checkpoints_url(run), {"a": "x", "b": "cp-1"})
    assert page.status_code == 404 and 'id="checkpoints-problem"' in page.text


def test_checkpoints_page_needs_the_view_permission(db):
    run = make_run(status=RunStatus.SUCCEEDED, stages=1)
    assert login(staff_user("nobody")).get(checkpoints_url(run)).status_code == 403
    viewer = login(staff_user("viewer", *VIEW_PERMS))
    assert viewer.get(checkpoints_url(run)).status_code == 200


def test_stats_lists_stages_in_pipeline_order_with_a_trend(operator_client):
    make_run(status=RunStatus.FAILED, failed_at=5)
    make_run(status=RunStatus.SUCCEEDED, stages=8)

    page = operator_client.get(STATS)

    shown = [row["stats"].stage_name for row in page.context["stats"]]
    assert shown == [name for name in STAGES if name in shown]
    scene = next(
        row for row in page.context["stats"] if row["stats"].stage_name == "scene_generator"
    )
    today = scene["trend"][-1]
    assert len(scene["trend"]) == 14
    assert (today["executed"], today["failed"]) == (2, 1)
    assert 'class="trend"' in page.text


def test_stats_page_query_count_is_the_same_for_5_and_50_runs(operator_client):
    for _ in range(5):
        make_run(status=RunStatus.FAILED, failed_at=4)
    operator_client.get(STATS)
    with_5 = queries_for(operator_client, STATS)
    for _ in range(45):
        make_run(status=RunStatus.SUCCEEDED, stages=8)
    assert queries_for(operator_client, STATS) == with_5


@pytest.mark.usefixtures("sync_queue")
def test_checkpoints_page_reads_the_thread_of_a_graph_with_async_nodes(operator_client):
    run = start_run(graph="docs_async", input={"visited": []})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED

    page = operator_client.get(checkpoints_url(run))

    written = {entry.stage.stage_name for entry in page.context["checkpoints"] if entry.stage}
    assert written == {"fetch", "parse", "summarize"}
    assert page.context["checkpoints"][0].state["visited"] == ["fetch", "parse", "summarize"]
