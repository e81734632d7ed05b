"""The operator console in Chromium at a phone's width (390 px) and a desktop's (1440 px, with
admin's navigation sidebar open), in light and dark themes. Screenshots go to test-artifacts/
at both widths.

These pages need no worker: their runs are written as the runner leaves them.
"""

import re
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline.graphs.gamed.state import STAGES
from pipeline.models import AuditRecord, RunStatus, StageStatus
from pipeline.services import Actor, retry_run, start_run
from tests.console import OPERATOR_PERMS, make_run, staff_user
from tests.test_admin_browser import ARTIFACTS, chromium, log_in

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
    return log_in(browser, live_server, user, context)


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


def in_thread(work) -> None:
    """ORM work while Playwright's event loop runs in this thread (Django refuses it there)."""
    from django.db import connections

    def run():
        try:
            work()
        finally:
            connections.close_all()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()


def test_lists_refresh_while_runs_are_active_keeping_filters_search_and_selection(
    live_server, transactional_db
):
    from playwright.sync_api import expect

    staff_user("operator", *OPERATOR_PERMS)
    finishing = make_run(status=RunStatus.RUNNING, stages=3)
    finishing.stages.filter(stage_order=3).update(status=StageStatus.RUNNING)
    staying = make_run(status=RunStatus.RUNNING, stages=2)
    make_run(status=RunStatus.FAILED, failed_at=2)
    active = f"{live_server.url}/admin/pipeline/pipelinerun/?status__in=pending,running&q=plant"
    running_stages = f"{live_server.url}/admin/pipeline/stageexecution/?status__exact=running"

    def finish(run, status):
        def work():
            run.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.SUCCEEDED)
            type(run).objects.filter(pk=run.pk).update(status=status)

        return work

    with chromium() as browser:
        runs = open_console(browser, live_server, DESKTOP)
        runs.goto(active)
        rows = runs.locator("#result_list tbody tr")
        expect(rows).to_have_count(2)
        runs.locator(f"input.action-select[value='{staying.pk}']").check()
        runs.evaluate("window.sameDocument = true")
        stages = open_console(browser, live_server, PHONE)
        stages.goto(running_stages)
        expect(stages.locator("#result_list tbody tr")).to_have_count(1)
        expect(stages.locator("#live-list")).to_have_text("updating live")

        in_thread(finish(finishing, RunStatus.SUCCEEDED))

        expect(rows).to_have_count(1)
        expect(runs.locator(f"input.action-select[value='{staying.pk}']")).to_be_checked()
        expect(runs.locator(".action-counter")).to_contain_text("1 of")
        assert runs.evaluate("window.sameDocument") is True
        assert runs.url == active and runs.locator("#searchbar").input_value() == "plant"
        expect(stages.locator("#result_list tbody tr")).to_have_count(0)
        expect(stages.locator("#live-list")).to_contain_text("up to date")
        shoot(runs, f"live-runs-list-{DESKTOP}")
        shoot(stages, f"live-stage-list-{PHONE}")

        in_thread(finish(staying, RunStatus.CANCELLED))

        expect(rows).to_have_count(0)
        expect(runs.locator("#live-list")).to_contain_text("up to date")
        runs.set_viewport_size({"width": PHONE, "height": 900})
        shoot(runs, f"live-runs-list-{PHONE}")
        stages.set_viewport_size({"width": DESKTOP, "height": 900})
        shoot(stages, f"live-stage-list-{DESKTOP}")
        assert runs.evaluate("window.sameDocument") is True


@pytest.mark.usefixtures("sync_queue")
def test_operator_reads_a_run_and_acts_on_it_from_the_list_at_both_widths(
    live_server, transactional_db
):
    from playwright.sync_api import expect

    operator = staff_user("operator", *OPERATOR_PERMS)
    failed = start_run(
        graph="gamed",
        input={"question": "Order the planets", "faults": {"blueprint_validator": "fail_once"}},
        actor=Actor(user=operator),
    )
    failed.refresh_from_db()
    retry = retry_run(run=failed, from_stage="blueprint_validator", actor=Actor(user=operator))
    retry.refresh_from_db()
    failed_row = failed.stages.get(stage_name="blueprint_validator", status=StageStatus.FAILED)
    waiting = make_run(status=RunStatus.PENDING, stages=0, subject="to be cancelled")
    assert retry.status == RunStatus.SUCCEEDED
    retry_stages = retry.stages.count()

    with chromium() as browser:
        for width in (PHONE, DESKTOP):
            page = open_console(browser, live_server, width)
            favicon = page.locator("link[rel=icon]").get_attribute("href")
            assert page.request.get(live_server.url + favicon).headers["content-type"] == (
                "image/svg+xml"
            )

            # The retry's page: figures, times, JSON trees, the run-wide log, stage links.
            page.goto(live_server.url + retry.admin_path)
            expect(page.locator("#run-progress")).to_have_text(f"{retry_stages}/{retry_stages}")
            expect(page.locator("#run-started time")).to_contain_text("UTC")
            expect(page.locator("#run-started .age")).to_contain_text("ago")
            output = page.locator(".field-output_tree .json-tree")
            output.locator("input[type=search]").fill("blueprint")
            expect(output.locator(".jt-matches")).to_contain_text("match")
            expect(output.locator(".jt-hit").first).to_be_visible()
            page.select_option("#log-level", "30")
            shown = page.locator("#run-log tbody tr:visible")
            assert all(
                int(shown.nth(i).get_attribute("data-level")) >= 30 for i in range(shown.count())
            )
            page.select_option("#log-level", "0")
            page.fill("#log-search", "router")
            expect(page.locator("#log-shown")).not_to_contain_text(" 0 of")
            page.locator("#graph-node-blueprint_validator").click()
            expect(page).to_have_url(re.compile(r"#stage-\d+$"))
            stage = page.locator(page.url[page.url.index("#") :])
            expect(stage.locator("details[data-key^=changes-]")).to_have_attribute("open", "")
            shoot(page, f"read-run-page-{width}")

            # Checkpoints: the state at each, a diff of two, and against the parent.
            page.click("#checkpoints-tab")
            expect(page.locator("#checkpoint-list tbody tr").first).to_be_visible()
            page.click("#compare-submit")
            expect(page.locator("#checkpoint-diff")).to_be_visible()
            page.click("#compare-parent")
            expect(page.locator("#checkpoint-diff")).to_contain_text(f"parent {failed.short_id}")
            shoot(page, f"read-checkpoints-{width}")

            # History is the audit trail; the retry preview lists each stage once.
            page.goto(live_server.url + failed.admin_path)
            page.get_by_role("link", name="History").click()
            expect(page.locator("#run-history")).to_contain_text("retry")
            page.goto(live_server.url + failed.admin_path)
            page.get_by_role("link", name="Retry from stage…").click()
            page.select_option("#id_stage", str(failed_row.pk))
            page.click("input[name=_preview]")
            expect(page.locator("#retry-will-run")).not_to_contain_text("blueprint_generator")
            expect(page.locator("#retry-may-run-again")).to_contain_text("blueprint_generator")
            shoot(page, f"read-retry-preview-{width}")

            # Stage statistics in pipeline order, each with its trend.
            page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/stats/")
            names = page.locator("#stage-stats tbody tr td:first-child a").all_text_contents()
            assert names == [name for name in STAGES if name in names]
            expect(page.locator("#stats-router .trend")).to_be_visible()
            shoot(page, f"read-stats-{width}")

            # Per-row actions in the runs list.
            page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/")
            shoot(page, f"read-runs-list-{width}")
            page.locator(f"a.row-action-retry[href*='{failed.pk}']").click()
            expect(page.locator("#id_stage")).to_have_value(str(failed_row.pk))
            if width == DESKTOP:
                page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/")
                page.locator(f"a.row-action-cancel[href*='{waiting.pk}']").click()
                page.fill("#id_reason", "asked twice")
                page.click("input[name=_confirm]")
                expect(page.locator(".messagelist")).to_contain_text("Cancelled")
            page.context.close()

    waiting.refresh_from_db()
    assert waiting.status == RunStatus.CANCELLED
    record = AuditRecord.objects.get(run=waiting, action="cancel")
    assert (record.actor, record.via, record.reason) == (operator, "admin", "asked twice")


def test_ages_beside_times_keep_counting_while_a_page_stays_open(live_server, transactional_db):
    from playwright.sync_api import expect

    staff_user("operator", *OPERATOR_PERMS)
    # Two and a half minutes ago: "2 minutes" now, and still "2" a few seconds later.
    started = timezone.now() - timedelta(minutes=2, seconds=30)
    run = make_run(status=RunStatus.SUCCEEDED, started_at=started, stages=2)

    with chromium() as browser:
        page = open_console(browser, live_server, DESKTOP)
        page.clock.install(time=timezone.now())
        page.goto(live_server.url + run.admin_path)
        on_page = page.locator("#run-started small.age")
        expect(on_page).to_have_text("(2\u00a0minutes ago)")
        page.clock.fast_forward(3_600_000)
        expect(on_page).to_have_text("(1\u00a0hour, 2\u00a0minutes ago)")

        page.goto(live_server.url + "/admin/pipeline/pipelinerun/")
        in_list = page.locator(f"#result_list tr:has(a[href='{run.admin_path}']) small.age")
        expect(in_list).to_have_text("2\u00a0minutes ago")
        page.clock.fast_forward(7_200_000)  # the page's clock was an hour on already
        expect(in_list).to_have_text("3\u00a0hours ago")
