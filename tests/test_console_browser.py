"""The operator console in Chromium at a phone's width (390 px) and a desktop's (1440 px, with
admin's navigation sidebar open), in light and dark themes. Screenshots go to test-artifacts/
at both widths.

These pages need no worker: their runs are written as the runner leaves them.
"""

import pytest

from pipeline.models import RunStatus, StageStatus
from tests.console import OPERATOR_PERMS, make_run, staff_user
from tests.test_admin_browser import ARTIFACTS, chromium

pytestmark = pytest.mark.browser

PHONE, DESKTOP = 390, 1440
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
CONTRAST_ONLY = {"runOnly": {"type": "rule", "values": ["color-contrast"]}}


def open_console(browser, live_server, width: int, *, theme: str = "light", user="operator"):
    """A logged-in page. `theme`: "light", "dark" (the system's preference, admin's theme on
    auto) or "dark-toggle" (the theme chosen with admin's toggle)."""
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        color_scheme="dark" if theme == "dark" else "light",
    )
    if theme == "dark-toggle":
        context.add_init_script("window.localStorage.setItem('theme', 'dark')")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", user)
    page.fill("#id_password", "pw-" + user)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def contrast_problems(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    response = Axe().run(page, options=CONTRAST_ONLY).response
    return [
        f"{node['target']}: {node['any'][0]['message']}"
        for violation in response["violations"]
        for node in violation["nodes"]
    ]


def overlapping(boxes: list[dict]) -> list[tuple[dict, dict]]:
    return [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
    ]


def console_runs() -> dict[str, str]:
    """A run of every status, a retry with reused stages, and the pages that show them."""
    failed = make_run(
        status=RunStatus.FAILED,
        failed_at=5,
        subject="Label the parts of a plant cell and explain what each one does in photosynthesis",
    )
    retry = make_run(
        status=RunStatus.SUCCEEDED,
        parent_run=failed,
        root_run=failed,
        retry_depth=1,
        retry_from_stage="scene_generator",
    )
    retry.stages.filter(stage_order__lt=5).update(status=StageStatus.REUSED)
    for status in (RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.INTERRUPTED):
        make_run(status=status, stages=3)
    make_run(status=RunStatus.PENDING, stages=0)
    return {
        "runs": "/admin/pipeline/pipelinerun/",
        "failed-run": failed.admin_path,
        "retry-run": retry.admin_path,
        "stages": "/admin/pipeline/stageexecution/",
        "stats": "/admin/pipeline/pipelinerun/stats/",
        "inbox": "/admin/pipeline/pipelinerun/waiting/",
    }


def test_console_pages_fit_a_phone_and_a_desktop_with_the_sidebar_in_both_themes(
    live_server, transactional_db
):
    staff_user("operator", *OPERATOR_PERMS)
    pages = console_runs()
    problems = []

    with chromium() as browser:
        for width, theme in (
            (PHONE, "light"),
            (PHONE, "dark"),
            (DESKTOP, "light"),
            (DESKTOP, "dark-toggle"),
        ):
            page = open_console(browser, live_server, width, theme=theme)
            for name, path in pages.items():
                page.goto(live_server.url + path)
                where = f"{name} at {width} px, {theme}"
                if (sideways := page.evaluate(SIDEWAYS)) > 0:
                    problems.append(f"{where}: the page scrolls {sideways} px sideways")
                problems += [f"{where}: {p}" for p in contrast_problems(page)]
                shoot(page, f"{name}-{width}-{theme}")
            if width == DESKTOP:
                page.goto(live_server.url + pages["runs"])
                assert page.locator("#nav-sidebar").is_visible()
                hidden = page.evaluate(
                    "() => { const r = document.querySelector('.results');"
                    " return r.scrollWidth - r.clientWidth; }"
                )
                if hidden > 0:
                    problems.append(f"runs list at {width} px: {hidden} px of columns hidden")
            page.goto(live_server.url + pages["retry-run"])
            ticks = page.locator(".timeline-ticks span:visible")
            boxes = [ticks.nth(i).bounding_box() for i in range(ticks.count())]
            assert len(boxes) >= 3
            if clash := overlapping(boxes):
                problems.append(f"timeline axis at {width} px: labels overlap {clash}")
            page.context.close()

    assert problems == []
