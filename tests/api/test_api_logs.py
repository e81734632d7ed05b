"""GET /api/runs/{id}/logs: what the stages logged, in order, filtered by stage and level."""

import pytest

from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")


def test_logs_of_a_stage_come_in_order(reader):
    run = start_run(graph="chatty", input={"records": 3})

    response = reader.get(f"/runs/{run.pk}/logs", stage="chatty")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["message"] for item in body["items"]] == [
        "record 1 of 3",
        "record 2 of 3",
        "record 3 of 3",
    ]
    assert body["items"][0]["extra"] == {"index": 1}
    assert {item["stage_name"] for item in body["items"]} == {"chatty"}


def test_level_filter_and_the_capped_stage_says_so(reader, settings):
    settings.GAMED_STAGE_LOG_LIMIT = 10
    run = start_run(graph="chatty", input={"records": 500})

    everything = reader.get(f"/runs/{run.pk}/logs").json()
    warnings = reader.get(f"/runs/{run.pk}/logs", level="warning").json()

    assert everything["count"] == 11
    assert warnings["count"] == 1
    assert "490 more log records were dropped" in warnings["items"][0]["message"]


def test_gamed_logs_filtered_by_stage_execution(reader):
    run = start_run(graph="gamed", input={"question": "Label the parts of a plant cell"})
    router = run.stages.get(stage_name="router")

    body = reader.get(f"/runs/{run.pk}/logs", stage_order=router.stage_order).json()

    assert [item["stage_name"] for item in body["items"]] == ["router"]
    assert body["items"][0]["message"].startswith("Chose label_diagram")


def test_logs_errors(reader):
    run = start_run(graph="chatty", input={"records": 1})
    assert reader.get(f"/runs/{run.pk}/logs", level="loud").status_code == 422
    missing = reader.get("/runs/00000000-0000-0000-0000-000000000000/logs")
    assert missing.status_code == 404
