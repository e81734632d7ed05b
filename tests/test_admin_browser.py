"""The operator console in a real browser: retry a failed run and watch the retry finish live.

Headless Debian Chromium driven by Playwright, against pytest-django's live server and a real
qcluster worker. Screenshots go to test-artifacts/.
"""

import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.models import PipelineRun, RunStatus, StageStatus
from pipeline.services import start_run
from tests.conftest import ROOT, wait_for_runs
from tests.console import OPERATOR_PERMS, VIEW_PERMS, staff_user
from tests.services import in_ci

pytestmark = [pytest.mark.browser, pytest.mark.worker]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
FAILED_STAGE = "scene_generator"
# The retry's blueprint_generator sleeps, so the new run's page opens while it is still running.
FAULTS = {FAILED_STAGE: "fail_once", "blueprint_generator": "sleep:3"}


def require_browser():
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (make chromium installs Debian's chromium)"
    if problem:
        if in_ci():
            pytest.fail(f"browser tests need Chromium in CI: {problem}")
        pytest.skip(problem)


@contextmanager
def chromium():
    """Headless Chromium. Playwright's sync API runs an event loop in this thread while it is
    open, and Django refuses ORM calls then: touch the database only before or after."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def log_in(browser, live_server, username: str, context=None):
    """A page logged in as `username`, in `context` (default: a 1400 px wide one)."""
    page = (context or browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def test_operator_retries_a_failed_run_and_watches_the_retry_succeed(
    live_server, workers, transactional_db
):
    require_browser()
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    staff_user("operator", *OPERATOR_PERMS)
    staff_user("viewer", *VIEW_PERMS)
    workers.start()
    question = "Label the parts of a plant cell"
    [failed] = wait_for_runs(
        [start_run(graph="gamed", input={"question": question, "faults": FAULTS})],
        workers=workers,
    )
    assert failed.status == RunStatus.FAILED
    failed_row = failed.stages.get(stage_name=FAILED_STAGE, status=StageStatus.FAILED)
    failed_page = live_server.url + failed.admin_path

    with chromium() as browser:
        page = log_in(browser, live_server, "operator")
        page.goto(failed_page)
        expect(page.locator("#run-status")).to_have_text("failed")
        expect(page.locator(f"#graph-node-{FAILED_STAGE}")).to_have_attribute(
            "data-status", "failed"
        )
        page.get_by_role("link", name="Retry from stage…").click()

        expect(page.locator("#id_stage")).to_have_value(str(failed_row.pk))
        page.fill("#id_reason", "scene model hiccup")
        page.click("input[name=_preview]")
        expect(page.locator("#retry-preview")).to_contain_text(FAILED_STAGE)
        expect(page.locator("#id_stage")).to_have_value(str(failed_row.pk))
        page.click("input[name=_confirm]")

        page.wait_for_url(re.compile(r"/admin/pipeline/pipelinerun/[0-9a-f-]{36}/change/$"))
        new_run_url = page.url
        status = page.locator("#run-status")
        landed_on = status.text_content()
        expect(page.locator("#graph-node-blueprint_generator")).to_have_attribute(
            "data-status", "running", timeout=30_000
        )
        expect(page.locator("#run-live")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "run-page-running.png", full_page=True)
        expect(status).to_have_text("succeeded", timeout=60_000)
        expect(page.locator("#run-live")).to_have_count(0)  # reloaded once, no longer polling
        expect(page.locator(".timeline-bar.status-reused")).to_have_count(4 + 1)
        page.screenshot(path=ARTIFACTS / "run-page.png", full_page=True)
        page.locator("#timeline-module").screenshot(path=ARTIFACTS / "timeline.png")

        viewer = log_in(browser, live_server, "viewer")
        viewer.goto(failed_page)
        expect(viewer.locator("#run-status")).to_have_text("failed")
        expect(viewer.locator("#stage-table tbody.stage")).to_have_count(5)
        expect(viewer.locator(".object-tools [class^=run-action-]")).to_have_count(0)
        expect(viewer.get_by_text("Retry from stage…")).to_have_count(0)
        viewer.screenshot(path=ARTIFACTS / "run-page-viewer.png", full_page=True)

    assert landed_on in (RunStatus.PENDING, RunStatus.RUNNING)
    assert new_run_url != failed_page
    retry = PipelineRun.objects.get(parent_run=failed)
    assert live_server.url + retry.admin_path == new_run_url
    assert retry.status == RunStatus.SUCCEEDED
    assert retry.reason == "scene model hiccup"
    assert retry.requested_by.username == "operator"
    assert all((ARTIFACTS / name).stat().st_size > 0 for name in ("run-page.png", "timeline.png"))


def test_operator_answers_a_waiting_run_from_the_inbox(live_server, workers, transactional_db):
    staff_user("operator", *OPERATOR_PERMS)
    workers.start()
    run = start_run(
        graph="gamed", input={"question": "Label the parts of a plant cell", "review": True}
    )
    (run,) = wait_for_runs([run], statuses=(RunStatus.WAITING,), workers=workers)
    ARTIFACTS.mkdir(exist_ok=True)

    with chromium() as browser:
        page = log_in(browser, live_server, "operator")
        page.click("#inbox-link")
        row = page.locator(".inbox-row").first
        row.locator(".question-text", has_text="Publish the label_diagram game").wait_for()
        page.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)
        row.get_by_role("button", name="approve").click()
        page.get_by_text("it continues").wait_for()
        page.get_by_text("No run is waiting for an answer.").wait_for()

    (run,) = wait_for_runs([run], workers=workers)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.output["output"]["review"] == "approved"
    question = run.questions.get()
    assert question.answered_by.username == "operator" and question.answer == "approve"
