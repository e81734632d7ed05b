"""/api/docs works without the internet: Swagger UI comes from django-ninja's static files,
served by the console itself (`make run` serves them too: tests/test_make_run.py)."""

import re

import pytest
from django.contrib.staticfiles import finders

from tests.console import login, staff_user
from tests.test_admin_browser import ARTIFACTS, chromium, log_in

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.django_db
def test_docs_page_references_only_the_consoles_own_assets():
    page = login(staff_user("staff")).get("/api/docs").text
    assets = ASSET.findall(page)
    assert "/static/ninja/swagger-ui-bundle.js" in assets
    assert "/static/ninja/swagger-ui.css" in assets
    assert "//" not in page.replace("<!DOCTYPE html>", "")
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset


@pytest.mark.browser
def test_swagger_ui_renders_with_every_request_answered_by_the_console(
    live_server, transactional_db
):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    staff_user("staff")
    elsewhere, answered = [], {}
    with chromium() as browser:
        page = log_in(browser, live_server, "staff")
        # Anything not served by the console is refused, as it would fail offline.
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(live_server.url)
                else (elsewhere.append(route.request.url), route.abort())
            ),
        )
        page.on("response", lambda response: answered.update({response.url: response.status}))
        page.goto(f"{live_server.url}/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("gamed-console API")
        expect(page.locator(".opblock-tag-section").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "api-docs.png", full_page=False)
    assert elsewhere == []
    statics = {url: status for url, status in answered.items() if "/static/ninja/" in url}
    assert len(statics) >= 3 and set(statics.values()) == {200}, statics
