"""In a browser: from the admin index to the failures that still need an operator, and a
recovered run's page that says at once which run recovered it."""

import re

import pytest

from tests.console import OPERATOR_PERMS, staff_user
from tests.test_admin_browser import ARTIFACTS, chromium, log_in
from tests.test_recovered_failures import lineage

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [390, 1440])
def test_operator_finds_unrecovered_failures_and_sees_what_recovered_the_others(
    live_server, transactional_db, width
):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    staff_user("operator", *OPERATOR_PERMS)
    runs = lineage()
    fix = runs["fix"]
    with chromium() as browser:
        page = log_in(browser, live_server, "operator")
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/admin/")
        page.click("#unrecovered-link")
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(runs["open"].short_id)
        page.screenshot(path=ARTIFACTS / f"unrecovered-failures-{width}.png", full_page=True)

        page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/")
        root_row = page.locator("#result_list tbody tr").filter(
            has=page.locator("th", has_text=re.compile(f"^{runs['root'].short_id}$"))
        )
        badge = root_row.locator(".run-recovered")
        expect(badge).to_contain_text(f"recovered by {fix.short_id}")

        page.goto(live_server.url + runs["failed_retry"].admin_path)
        note = page.locator("#run-recovered")
        expect(note).to_be_visible()
        expect(note).to_contain_text(f"Recovered: run {fix.short_id} of its lineage succeeded")
        page.screenshot(path=ARTIFACTS / f"recovered-run-page-{width}.png")
        note.get_by_role("link", name=fix.short_id).click()
        page.wait_for_url(live_server.url + fix.admin_path)
