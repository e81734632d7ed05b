"""A failed run whose lineage later succeeded is recovered: every surface says so, lists filter
the failures still open, and bulk retries (admin's and the API's alike) leave recovered runs
alone."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from pipeline.models import PipelineRun, RunStatus
from tests.api.conftest import ApiClient, integration_key
from tests.console import OPERATOR_PERMS, login, make_run, staff_user
from tests.test_admin_console import queries_for

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/pipeline/pipelinerun/"
BULK_RETRY = {"action": "retry_from_failed_stage", "index": 0}


def lineage(start=None) -> dict[str, PipelineRun]:
    """A root run that failed, a retry of it that failed too, and a later retry that succeeded;
    and a failure of another graph run that nothing recovered."""
    start = start or timezone.now() - timedelta(hours=1)

    def run(status, minutes, **fields):
        return make_run(
            status=status,
            failed_at=5 if status == RunStatus.FAILED else None,
            created_at=start + timedelta(minutes=minutes),
            started_at=start + timedelta(minutes=minutes),
            **fields,
        )

    root = run(RunStatus.FAILED, 0, subject="root failure")
    retry = {"parent_run": root, "root_run": root, "retry_depth": 1}
    failed_retry = run(RunStatus.FAILED, 1, subject="failed retry", **retry)
    fix = run(RunStatus.SUCCEEDED, 2, subject="the fix", **retry)
    open_failure = run(RunStatus.FAILED, 3, subject="open failure")
    return {"root": root, "failed_retry": failed_retry, "fix": fix, "open": open_failure}


@pytest.fixture
def runs() -> dict[str, PipelineRun]:
    return lineage()


@pytest.fixture
def operator_client():
    return login(staff_user("operator", *OPERATOR_PERMS))


def test_a_failure_is_recovered_by_the_first_later_success_of_its_lineage(runs):
    recovered = dict(PipelineRun.objects.with_recovery().values_list("pk", "recovered_by_id"))
    assert recovered == {
        runs["root"].pk: runs["fix"].pk,
        runs["failed_retry"].pk: runs["fix"].pk,
        runs["fix"].pk: None,
        runs["open"].pk: None,
    }
    assert list(PipelineRun.objects.unrecovered_failures()) == [runs["open"]]


def test_a_failure_after_the_lineage_succeeded_is_not_recovered(runs):
    later = make_run(
        status=RunStatus.FAILED,
        failed_at=3,
        parent_run=runs["fix"],
        root_run=runs["root"],
        retry_depth=2,
        created_at=timezone.now(),
    )
    assert PipelineRun.objects.with_recovery().get(pk=later.pk).recovered_by_id is None
    assert set(PipelineRun.objects.unrecovered_failures()) == {runs["open"], later}


# Admin -----------------------------------------------------------------------------------------


def test_runs_list_marks_recovered_failures_with_the_run_that_recovered_them(operator_client, runs):
    page = operator_client.get(CHANGELIST).text
    fix = runs["fix"]
    badge = f'recovered by <a href="{fix.admin_path}">{fix.short_id}</a>'
    assert page.count(badge) == 2


def test_runs_list_says_when_a_failure_was_recovered_in_plain_text(operator_client, runs):
    page = operator_client.get(CHANGELIST).text
    titles = re.findall(r'class="run-recovered" title="recovered ([^"]*)"', page)
    assert len(titles) == 2
    assert all(title and "<" not in title for title in titles), titles


def test_runs_list_filters_unrecovered_failures(operator_client, runs):
    page = operator_client.get(CHANGELIST, {"recovery": "unrecovered"}).text
    assert "open failure" in page
    assert "root failure" not in page and "failed retry" not in page and "the fix" not in page
    recovered = operator_client.get(CHANGELIST, {"recovery": "recovered"}).text
    assert "root failure" in recovered and "failed retry" in recovered
    assert "open failure" not in recovered and "the fix" not in recovered


def test_admin_index_links_to_unrecovered_failures(operator_client):
    page = operator_client.get("/admin/").text
    assert f'href="{CHANGELIST}?recovery=unrecovered" id="unrecovered-link"' in page


def test_run_page_says_at_the_top_which_run_recovered_it(operator_client, runs):
    fix = runs["fix"]
    page = operator_client.get(runs["failed_retry"].admin_path).text
    assert page.index('id="run-recovered"') < page.index('id="timeline-module"')
    note = page[page.index('id="run-recovered"') :]
    assert f'<a href="{fix.admin_path}">{fix.short_id}</a> of its lineage succeeded' in note
    assert 'id="run-recovered"' not in operator_client.get(runs["open"].admin_path).text


def test_admin_bulk_retry_leaves_a_recovered_run_alone(operator_client, runs):
    # The failed retry has no retry of its own: only its lineage's success says it is done.
    response = operator_client.post(
        CHANGELIST,
        {**BULK_RETRY, "_selected_action": [runs["failed_retry"].pk, runs["root"].pk]},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert "Retried 0 runs." in message
    failed_retry = runs["failed_retry"]
    assert f"{failed_retry.short_id} (Run {failed_retry.pk} was already recovered" in message
    assert message.count("already recovered") == 2
    assert not PipelineRun.objects.filter(parent_run=runs["failed_retry"]).exists()
    assert PipelineRun.objects.filter(parent_run=runs["root"]).count() == 2


def test_runs_list_costs_the_same_queries_with_more_recovered_lineages(operator_client):
    start = timezone.now() - timedelta(days=1)
    lineage(start)
    operator_client.get(CHANGELIST)
    few = queries_for(operator_client, CHANGELIST)
    for hour in range(1, 8):
        lineage(start + timedelta(hours=hour))
    assert queries_for(operator_client, CHANGELIST) == few
    assert queries_for(operator_client, f"{CHANGELIST}?recovery=unrecovered") == few


# API -------------------------------------------------------------------------------------------


@pytest.fixture
def api() -> ApiClient:
    return ApiClient(integration_key())


def test_api_lists_and_shows_which_run_recovered_a_failure(api, runs):
    items = {item["id"]: item for item in api.get("/runs").json()["items"]}
    fix = runs["fix"]
    assert items[str(runs["root"].pk)]["recovered_by"] == str(fix.pk)
    assert items[str(runs["open"].pk)]["recovered_by"] is None
    detail = api.get(f"/runs/{runs['failed_retry'].pk}").json()
    assert detail["recovered_by"] == str(fix.pk)
    assert detail["recovered_at"].startswith(fix.finished_at.isoformat()[:19])


def test_api_filters_unrecovered_failures(api, runs):
    open_ids = [item["id"] for item in api.get("/runs", recovery="unrecovered").json()["items"]]
    assert open_ids == [str(runs["open"].pk)]
    recovered = {item["id"] for item in api.get("/runs", recovery="recovered").json()["items"]}
    assert recovered == {str(runs["root"].pk), str(runs["failed_retry"].pk)}
    assert api.get("/runs", recovery="maybe").status_code == 422


def test_api_bulk_retry_takes_only_unrecovered_failures_never_retried(api, runs):
    body = api.post("/runs/bulk-retry", {"reason": "outage"}).json()
    assert body["matched"] == 1
    assert [r["run_id"] for r in body["retried"] + body["skipped"]] == [str(runs["open"].pk)]
    assert not PipelineRun.objects.filter(parent_run=runs["failed_retry"]).exists()


# CLI -------------------------------------------------------------------------------------------


def call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def recovered_column(text: str) -> dict[str, str]:
    header, _, *lines = text.splitlines()
    at = header.index("recovered by")
    return {line.split()[0]: line[at:].split()[0] for line in lines}


def test_runs_command_shows_and_filters_recovered_failures(runs):
    column = recovered_column(call("runs"))
    assert column[runs["root"].short_id] == runs["fix"].short_id
    assert column[runs["open"].short_id] == "-"
    unrecovered = call("runs", "--unrecovered").splitlines()[2:]
    assert [line.split()[0] for line in unrecovered] == [runs["open"].short_id]


def test_show_run_says_which_run_recovered_it(runs):
    text = call("show_run", runs["failed_retry"].short_id)
    assert re.search(rf"^recovered +by run {runs['fix'].pk} at 20", text, re.MULTILINE)
    assert "recovered" not in call("show_run", runs["open"].short_id).split("\n\n")[0]
