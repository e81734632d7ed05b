"""The operator console's runs list and run page: what they show, and what they cost."""

import re
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from observability.run_page import layout_graph, stage_changes, stage_log_preview
from pipeline.graphs import compiled_graph
from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus
from pipeline.services import start_run
from tests.console import OPERATOR_PERMS, login, make_run, staff_user

CHANGELIST = "/admin/pipeline/pipelinerun/"
GAMED_FIRST_THREE = ["input_enhancer", "domain_knowledge_retriever", "router"]


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


# Runs list ------------------------------------------------------------------------------------


def test_runs_list_shows_status_progress_failed_stage_and_a_link_to_the_parent(operator_client):
    parent = make_run(status=RunStatus.FAILED, failed_at=5)
    child = make_run(
        status=RunStatus.RUNNING,
        stages=3,
        parent_run=parent,
        root_run=parent,
        retry_depth=1,
        retry_from_stage="scene_generator",
    )
    page = operator_client.get(CHANGELIST)
    assert page.status_code == 200
    assert '<span class="run-status status-failed">failed</span>' in page.text
    assert '<span class="run-status status-running">running</span>' in page.text
    # The running retry has done 3 stages and has the graph's 6 later ones still ahead.
    assert "4/5" in page.text and "3/9" in page.text
    assert '<td class="field-failed_stage">scene_<wbr>generator</td>' in page.text
    parent_link = f'<a href="{parent.admin_path}">{parent.short_id}</a>'
    assert f"1<br><small>of {parent_link}</small>" in page.text
    assert child.short_id in page.text


def test_runs_list_filters_by_failed_stage(operator_client):
    at_scene = make_run(status=RunStatus.FAILED, failed_at=5, subject="scene failure")
    at_router = make_run(status=RunStatus.FAILED, failed_at=3, subject="router failure")
    page = operator_client.get(CHANGELIST)
    assert "?failed_stage=router" in page.text and "?failed_stage=scene_generator" in page.text
    filtered = operator_client.get(CHANGELIST, {"failed_stage": "router"})
    assert at_router.subject in filtered.text
    assert at_scene.subject not in filtered.text


def test_runs_list_filters_by_status_graph_and_retry_depth(operator_client):
    make_run(status=RunStatus.FAILED, failed_at=2, subject="the failed one")
    make_run(status=RunStatus.SUCCEEDED, subject="the good one", retry_depth=2)
    failed = operator_client.get(CHANGELIST, {"status__exact": "failed"})
    assert "the failed one" in failed.text and "the good one" not in failed.text
    deep = operator_client.get(CHANGELIST, {"retry_depth": "2"})
    assert "the good one" in deep.text and "the failed one" not in deep.text
    by_graph = operator_client.get(CHANGELIST, {"graph": "gamed"})
    assert "the good one" in by_graph.text and "the failed one" in by_graph.text


def test_runs_list_searches_subject_and_error_text(operator_client):
    broken = make_run(status=RunStatus.FAILED, failed_at=2, subject="heart")
    PipelineRun.objects.filter(pk=broken.pk).update(error_message="KeyError: 'ventricle'")
    make_run(subject="water cycle")
    by_error = operator_client.get(CHANGELIST, {"q": "ventricle"})
    assert "heart" in by_error.text and "water cycle" not in by_error.text
    by_subject = operator_client.get(CHANGELIST, {"q": "water"})
    assert "water cycle" in by_subject.text and "heart" not in by_subject.text
    by_id = operator_client.get(CHANGELIST, {"q": str(broken.pk)})
    assert "heart" in by_id.text and "water cycle" not in by_id.text


def _many_runs(count: int) -> None:
    parent = make_run(status=RunStatus.FAILED, failed_at=5)
    for i in range(count - 1):
        if i % 3 == 0:
            make_run(
                status=RunStatus.SUCCEEDED,
                parent_run=parent,
                root_run=parent,
                retry_depth=1,
                retry_from_stage=f"stage{i}",
            )
        else:
            make_run(status=RunStatus.FAILED, failed_at=1 + i % 8)


def test_runs_list_query_count_is_the_same_for_5_and_200_runs(operator_client):
    _many_runs(5)
    operator_client.get(CHANGELIST)
    with_5 = queries_for(operator_client, CHANGELIST)
    _many_runs(195)
    assert PipelineRun.objects.count() == 200
    with_200 = queries_for(operator_client, CHANGELIST)
    assert with_200 == with_5


# Run page -------------------------------------------------------------------------------------


def test_run_page_shows_timeline_graph_and_stage_details(operator_client):
    run = make_run(status=RunStatus.FAILED, failed_at=5)
    page = operator_client.get(run.admin_path)
    assert page.status_code == 200
    text = page.text
    assert '<span id="run-status" class="run-status status-failed">failed</span>' in text
    stages = list(run.stages.order_by("stage_order"))
    for stage in stages:
        assert f'id="timeline-stage-{stage.pk}"' in text
        assert f'id="stage-{stage.pk}"' in text
    failed = stages[-1]
    assert 'class="timeline-bar status-failed"' in text
    assert '<div class="timeline-error">InjectedFault: boom</div>' in text
    assert "Traceback (most recent call last)" in text
    assert f"cp-{failed.stage_order - 1}" in text
    # the stage's update against the state it read
    assert "What it changed (1 key)" in text
    # every node of GamED's graph, coloured by its latest status here
    assert 'id="graph-node-scene_generator" data-status="failed"' in text
    assert 'id="graph-node-router" data-status="succeeded"' in text
    assert 'id="graph-node-output_renderer" data-status="not run"' in text
    assert text.count('<path class="edge') == len(compiled_graph("gamed").get_graph().edges)
    assert 'class="edge conditional back"' in text


def test_reused_stages_are_drawn_apart_on_the_timeline(operator_client):
    parent = make_run(status=RunStatus.FAILED, failed_at=5)
    retry = make_run(
        status=RunStatus.SUCCEEDED,
        parent_run=parent,
        root_run=parent,
        retry_depth=1,
        retry_from_stage="scene_generator",
    )
    originals = list(parent.stages.order_by("stage_order"))[:4]
    for row in retry.stages.filter(stage_order__lte=4):
        row.status = StageStatus.REUSED
        row.reused_from = originals[row.stage_order - 1]
        row.duration_ms = 0
        row.save()
    page = operator_client.get(retry.admin_path)
    assert page.text.count('class="timeline-bar status-reused"') == 4 + 1  # + the legend
    assert "reused from an earlier run, no execution" in page.text
    assert f"#stage-{originals[0].pk}" in page.text
    assert 'data-status="succeeded"' in page.text


def test_lineage_shows_the_whole_tree_and_whether_any_run_succeeded(operator_client, db):
    operator = staff_user("alice", *OPERATOR_PERMS)
    root = make_run(status=RunStatus.FAILED, failed_at=5)
    first = make_run(
        status=RunStatus.FAILED,
        failed_at=6,
        parent_run=root,
        root_run=root,
        retry_depth=1,
        retry_from_stage="scene_generator",
    )
    second = make_run(
        status=RunStatus.SUCCEEDED,
        parent_run=first,
        root_run=root,
        retry_depth=2,
        retry_from_stage="blueprint_generator",
        requested_by=operator,
    )
    sibling = make_run(
        status=RunStatus.CANCELLED,
        stages=2,
        parent_run=root,
        root_run=root,
        retry_depth=1,
        retry_from_stage="",
    )
    page = operator_client.get(root.admin_path)
    text = page.text
    assert '<span class="run-status status-succeeded" id="lineage-outcome">succeeded</span>' in text
    assert f'(run <a href="{second.admin_path}">{second.short_id}</a> succeeded)' in text
    order = [text.index(f'id="lineage-{r.pk}"') for r in (root, first, second, sibling)]
    assert order == sorted(order)
    assert "from blueprint_generator" in text and "by alice via" in text
    assert "rerun from scratch" in text
    # the same tree, seen from a leaf
    leaf = operator_client.get(second.admin_path).text
    assert all(f'id="lineage-{r.pk}"' in leaf for r in (root, first, second, sibling))


def test_lineage_outcome_of_a_tree_where_nothing_succeeded(operator_client):
    root = make_run(status=RunStatus.FAILED, failed_at=5)
    make_run(status=RunStatus.FAILED, failed_at=5, parent_run=root, root_run=root, retry_depth=1)
    page = operator_client.get(root.admin_path)
    assert 'id="lineage-outcome">failed</span>' in page.text
    assert "no run of the tree succeeded" in page.text


def test_run_page_query_count_is_the_same_for_3_and_30_stages(operator_client):
    small = make_run(stages=3)
    large = make_run(stages=30)
    for run in (small, large):
        make_run(parent_run=run, root_run=run, retry_depth=1, retry_from_stage="router")
    operator_client.get(small.admin_path)
    assert queries_for(operator_client, large.admin_path) == queries_for(
        operator_client, small.admin_path
    )


def test_live_endpoint_returns_status_and_stage_rows(operator_client):
    run = make_run(status=RunStatus.RUNNING, stages=3)
    url = reverse("admin:pipeline_pipelinerun_live", args=[run.pk])
    data = operator_client.get(url).json()
    assert data["status"] == "running" and data["is_terminal"] is False
    assert [s["name"] for s in data["stages"]] == GAMED_FIRST_THREE
    assert all(s["html"].startswith('\n<tbody class="stage"') for s in data["stages"])
    assert 'id="timeline-stage-' in data["timeline_html"]
    assert 'id="graph-node-router"' in data["graph_html"]
    known = ",".join(str(s["id"]) for s in data["stages"][:2])
    again = operator_client.get(url, {"have": known}).json()
    assert [s["html"] is None for s in again["stages"]] == [True, True, False]


def test_live_updates_run_only_while_the_run_is_active(operator_client):
    running = make_run(status=RunStatus.RUNNING, stages=2)
    done = make_run()
    live_page = operator_client.get(running.admin_path).text
    assert 'data-live="1"' in live_page and "updating live" in live_page
    assert "window.location.reload()" in live_page
    done_page = operator_client.get(done.admin_path).text
    assert 'data-live="0"' in done_page and "window.location.reload()" not in done_page


def test_live_endpoint_needs_the_view_permission(db):
    nobody = login(staff_user("nobody"))
    run = make_run(status=RunStatus.RUNNING, stages=1)
    url = reverse("admin:pipeline_pipelinerun_live", args=[run.pk])
    assert nobody.get(url).status_code == 403


def test_graph_layout_puts_the_validator_loop_on_a_back_edge():
    layout = layout_graph(compiled_graph("gamed").get_graph())
    back = [(e.source, e.target) for e in layout.edges if e.back]
    assert back == [("blueprint_validator", "blueprint_generator")]
    layers = {name: node.layer for name, node in layout.nodes.items()}
    assert layers["__start__"] == 0
    assert layers["human_review"] == layers["blueprint_validator"] + 1
    assert layers["output_renderer"] == layers["human_review"] + 1
    assert layers["__end__"] == max(layers.values())
    ys = [node.y for node in layout.nodes.values()]
    assert len(set(ys)) == len(ys)  # a chain: one node per layer
    assert all(re.match(r"^M[\d.]+,[\d.]+ [LC]", e.path) for e in layout.edges)


def test_run_page_shows_tokens_and_cost_where_stages_report_them(operator_client):
    run = make_run(stages=2)
    run.stages.filter(stage_order=2).update(
        model_id="model-x",
        model_calls=1,
        prompt_tokens=120,
        completion_tokens=30,
        total_tokens=150,
        cost_usd=Decimal("0.0042"),
    )
    text = operator_client.get(run.admin_path).text
    assert "<th>model</th>" in text and "model-x" in text
    assert "120 / 30" in text and "$0.0042" in text
    assert '<span class="label">tokens</span>150 <small>(120 in, 30 out, 1 model call)' in text
    plain = operator_client.get(make_run(stages=2).admin_path).text
    assert "<th>model</th>" not in plain


def test_stage_changes_compare_the_update_with_the_state_the_stage_read():
    stage = StageExecution(
        input_snapshot={"question": "q", "route": "quiz"},
        output_snapshot={"route": "quiz", "plan": {"time": 60}},
    )
    changes = {c.key: c for c in stage_changes(stage)}
    assert not changes["route"].changed
    assert changes["plan"].changed and changes["plan"].before == "(not set)"
    assert changes["plan"].update == '{\n  "time": 60\n}'
    stage.output_snapshot = {"_truncated": True, "bytes": 99999, "preview": "{"}
    assert stage_changes(stage) == []


def test_stage_log_preview_keeps_the_first_records_and_every_warning():
    stage = StageExecution()
    stage.logs = [
        {"level": 20, "level_name": "INFO", "logger": "t", "message": f"r{i}", "time": 0.5}
        for i in range(1, 151)
    ] + [{"level": 30, "level_name": "WARNING", "logger": "t", "message": "late", "time": 1.0}]
    preview = stage_log_preview(stage)
    assert preview.total == 151 and preview.hidden == 50
    assert [r["message"] for r in preview.shown][-2:] == ["r100", "late"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", preview.shown[0]["when"])
    stage.logs = []
    assert stage_log_preview(stage) is None


def test_run_page_shows_what_the_gamed_stages_logged(operator_client, sync_queue):
    run = start_run(graph="gamed", input={"question": "Label the parts of a plant cell"})
    router = run.stages.get(stage_name="router")
    assert router.logs
    page = operator_client.get(run.admin_path).text
    assert f'<details data-key="logs-{router.pk}"><summary>Logs ({len(router.logs)})' in page
    assert router.logs[0]["message"].split("\n")[0][:40] in page
