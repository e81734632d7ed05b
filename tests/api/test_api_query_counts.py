"""List and detail cost the same number of queries whatever the page size or stage count."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipeline.models import PipelineRun, StageExecution
from tests.api.conftest import recorded_run

pytestmark = pytest.mark.django_db


def queries(api, path: str, **params) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path, **params)
    assert response.status_code == 200, response.json()
    return len(captured)


def add_stages(run: PipelineRun, count: int) -> None:
    StageExecution.objects.bulk_create(
        StageExecution(run=run, stage_name=f"s{i}", stage_order=i, status="succeeded")
        for i in range(1, count + 1)
    )


def test_list_query_count_does_not_grow_with_page_size(api):
    for _ in range(60):
        add_stages(recorded_run(), 3)
    api.get("/runs")  # the key's last_used_at is written once, on first use

    small = queries(api, "/runs", page_size=5)
    large = queries(api, "/runs", page_size=60)

    # 2 of them load the key owner's permissions (user and group), once per request.
    assert small == large <= 6


def test_detail_query_count_does_not_grow_with_stages_or_retries(api):
    few = recorded_run()
    add_stages(few, 2)
    many = recorded_run()
    add_stages(many, 40)
    for _ in range(5):
        recorded_run(parent_run=many, root_run=many, retry_depth=1)
    api.get("/graphs")

    # 2 of them load the key owner's permissions (user and group), once per request; 2 read
    # the stages' model usage and the lineage's totals.
    assert queries(api, f"/runs/{few.pk}") == queries(api, f"/runs/{many.pk}") <= 9
    assert queries(api, f"/runs/{few.pk}/stages") == queries(api, f"/runs/{many.pk}/stages")
