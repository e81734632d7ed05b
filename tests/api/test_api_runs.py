"""Graphs and runs: create, list with filters and pages, detail with lineage, stages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline.graphs.gamed.state import STAGES
from pipeline.models import AuditRecord, PipelineRun, StageExecution, Surface
from tests.api.conftest import ApiClient, recorded_run

pytestmark = pytest.mark.django_db

GAMED_STAGES = STAGES


def test_graphs_lists_stages_input_schema_and_edges(api):
    response = api.get("/graphs")

    assert response.status_code == 200
    gamed = next(g for g in response.json() if g["name"] == "gamed")
    assert gamed["stages"] == GAMED_STAGES
    assert "question" in gamed["input_schema"]["properties"]
    assert {
        "source": "blueprint_validator",
        "target": "blueprint_generator",
        "conditional": True,
    } in gamed["edges"]
    assert "__start__" in gamed["nodes"] and gamed["mermaid"].startswith("---")


def test_unknown_graph_is_404(api):
    response = api.get("/graphs/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_graph"


def test_create_run_validates_and_queues_it(api, operator, write_key):
    response = api.post(
        "/runs", {"graph": "gamed", "input": {"question": "Label a cell"}, "reason": "demo"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    run = PipelineRun.objects.get(pk=body["id"])
    assert body["status"] == "pending" and body["input"]["max_blueprint_attempts"] == 3
    assert run.requested_by == operator and run.requested_via == Surface.API
    record = AuditRecord.objects.get(run=run)
    assert record.action == "start" and record.via == Surface.API and record.actor == operator
    assert record.actor_label == f"api key {write_key[0].prefix} (ci)"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"graph": "nope", "input": {"question": "x"}}, "unknown_graph"),
        ({"graph": "gamed", "input": {}}, "invalid_input"),
        (
            {"graph": "gamed", "input": {"question": "x", "faults": {"nowhere": "fail_always"}}},
            "invalid_input",
        ),
        ({"graph": "gamed"}, "invalid_request"),
        ({"graph": "gamed", "input": "question?"}, "invalid_request"),
    ],
)
def test_create_run_refuses_bad_requests_with_422(api, body, code):
    response = api.post("/runs", body)

    assert response.status_code == 422
    assert response.json()["code"] == code and response.json()["detail"]
    assert not PipelineRun.objects.exists()


def test_runs_are_listed_newest_first_in_capped_pages(api):
    now = timezone.now()
    runs = [recorded_run(created_at=now - timedelta(minutes=i)) for i in range(5)]
    tie = [recorded_run(created_at=now - timedelta(hours=1)) for _ in range(2)]

    body = api.get("/runs", page_size=3).json()
    assert body["count"] == 7
    assert [r["id"] for r in body["items"]] == [str(r.pk) for r in runs[:3]]
    page3 = api.get("/runs", page_size=3, page=3).json()["items"]
    assert [r["id"] for r in page3] == [str(min(r.pk for r in tie))]


def test_page_size_is_capped_at_100(api):
    PipelineRun.objects.bulk_create(
        PipelineRun(graph="gamed", thread_id=f"t{i}", status="succeeded") for i in range(105)
    )
    body = api.get("/runs", page_size=500).json()
    assert body["count"] == 105 and len(body["items"]) == 100


def test_runs_list_shows_progress_and_failed_stage(api):
    recorded_run(("input_enhancer", "succeeded"), ("router", "failed"))
    item = api.get("/runs").json()["items"][0]
    assert item["stage_count"] == 2 and item["stages_done"] == 1
    assert item["failed_stage"] == "router"


def test_runs_list_filters(api):
    now = timezone.now()
    failed = recorded_run(("input_enhancer", "succeeded"), ("scene_generator", "failed"))
    other = recorded_run(("router", "failed"), created_at=now - timedelta(days=2))
    ok = recorded_run(("input_enhancer", "succeeded"), status="succeeded")
    child = recorded_run(parent_run=failed, root_run=failed, retry_depth=1, status="succeeded")
    grandchild = recorded_run(parent_run=child, root_run=failed, retry_depth=2)

    def ids(**params):
        response = api.get("/runs", **params)
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["items"]}

    assert ids(status="succeeded") == {str(ok.pk), str(child.pk)}
    assert ids(failed_stage="scene_generator") == {str(failed.pk)}
    assert ids(root=str(failed.pk)) == {str(failed.pk), str(child.pk), str(grandchild.pk)}
    assert ids(parent=str(failed.pk)) == {str(child.pk)}
    assert ids(created_before=(now - timedelta(days=1)).isoformat()) == {str(other.pk)}
    assert str(other.pk) not in ids(created_after=(now - timedelta(days=1)).isoformat())
    assert ids(graph="test_chain") == set()
    assert api.get("/runs", status="bogus").status_code == 422


def test_run_detail_has_stages_children_lineage_and_totals(api):
    root = recorded_run(("input_enhancer", "succeeded"), ("router", "failed"))
    StageExecution.objects.filter(run=root, stage_order=1).update(
        prompt_tokens=100, completion_tokens=20, cost_usd="0.0125"
    )
    child = recorded_run(
        ("input_enhancer", "reused"), ("router", "failed"),
        parent_run=root, root_run=root, retry_depth=1, retry_from_stage="router",
    )  # fmt: skip
    grandchild = recorded_run(parent_run=child, root_run=root, retry_depth=2)

    body = api.get(f"/runs/{child.pk}").json()
    assert [s["status"] for s in body["stages"]] == ["reused", "failed"]
    assert [c["id"] for c in body["children"]] == [str(grandchild.pk)]
    assert body["ancestor_ids"] == [str(root.pk)]
    assert [r["id"] for r in body["lineage"]] == [str(root.pk), str(child.pk), str(grandchild.pk)]
    assert body["totals"]["executed_stages"] == 1 and body["totals"]["reused_stages"] == 1
    root_body = api.get(f"/runs/{root.pk}").json()
    assert root_body["totals"]["prompt_tokens"] == 100
    assert root_body["totals"]["cost_usd"] == pytest.approx(0.0125)
    assert root_body["totals"]["stage_time_ms"] == 20


def test_unknown_run_is_404_and_a_malformed_id_is_404_too(api):
    missing = api.get("/runs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["code"] == "run_not_found"
    malformed = api.get("/runs/not-a-uuid")
    assert malformed.status_code == 404 and malformed.json()["code"] == "not_found"


def test_stages_of_a_run_and_one_stage_in_full(api):
    run = recorded_run(("input_enhancer", "succeeded"), ("router", "failed"))
    StageExecution.objects.filter(run=run, stage_order=2).update(
        error_traceback="Traceback ...", input_snapshot={"q": 1}
    )
    stages = api.get(f"/runs/{run.pk}/stages").json()
    assert [s["stage_name"] for s in stages] == ["input_enhancer", "router"]

    one = api.get(f"/runs/{run.pk}/stages/{stages[1]['id']}").json()
    assert one["error_traceback"] == "Traceback ..." and one["input_snapshot"] == {"q": 1}
    other = recorded_run(("router", "failed"))
    wrong = api.get(f"/runs/{other.pk}/stages/{stages[1]['id']}")
    assert wrong.status_code == 404 and wrong.json()["code"] == "stage_not_found"


def test_unknown_api_paths_answer_in_the_error_shape(api):
    response = api.get("/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such API endpoint.", "code": "not_found"}


def test_nul_characters_are_refused_before_they_reach_the_database(api):
    created = api.post("/runs", {"graph": "gamed", "input": {"question": "a\x00b"}})
    assert created.status_code == 422 and created.json()["code"] == "invalid_request"
    assert api.get("/runs", graph="x\x00").status_code == 422
    run = recorded_run()
    assert api.get(f"/runs/{run.pk}/checkpoints/x%00y").status_code == 404
    assert ApiClient("gmd_\x00\x00_secret").get("/graphs").status_code == 401


def test_created_range_accepts_any_offset(api):
    recorded_run()
    response = api.get("/runs", created_after="0470-11-06T21:48:50+20:46")
    assert response.status_code == 200 and response.json()["count"] == 1


@pytest.mark.parametrize("when", ["-272", "1700000000", "1.5e9"])
def test_a_number_is_not_a_date_time_filter(api, when):
    response = api.get("/runs", created_after=when)
    assert response.status_code == 422
    assert api.get("/runs", created_after="2026-12-02").status_code == 200
    assert api.get("/runs", created_before="2026-12-02T10:00:00+01:00").status_code == 200
