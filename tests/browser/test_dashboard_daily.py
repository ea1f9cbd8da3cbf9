"""The dashboard as an operator works from it every day, in a real browser: find a job
by id, filter the list by owner and function, read the last hour's chart, and all of
it on a 420 px wide phone screen without the page scrolling sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlq import MLQ
from tests.http.conftest import ServerProcess

from .conftest import still_picture


def daily(msg: Any, *args: Any) -> Any:
    if msg == "fail":
        raise ValueError("failing on purpose")
    return msg


LISTENERS = [daily]

NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


def _ran(dash_server: ServerProcess, dash_worker: MLQ, msg: Any, **options: Any) -> str:
    job_id = dash_server.post_job(msg, **options)
    dash_worker.wait(job_id, 10)
    return job_id


def test_search_opens_the_job_and_filters_narrow_the_list(
        page: Any, dash_server: ServerProcess, dash_worker: MLQ, artifacts: Path) -> None:
    alice = _ran(dash_server, dash_worker, "a", owner="alice", functions=["daily"])
    bob = _ran(dash_server, dash_worker, "b", owner="bob", functions=["daily"])
    page.goto(f"{dash_server.url}/ui/jobs")
    page.get_by_label("Job id").fill(bob)
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(f"**/ui/jobs/{bob}")
    assert page.locator("h1").inner_text().startswith(f"Job {bob}")
    still_picture(page, artifacts, "daily-search.png", "dashboard-search.png")

    page.goto(f"{dash_server.url}/ui/jobs")
    page.get_by_label("Owner").fill("alice")
    page.get_by_label("Function").fill("daily")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**owner=alice**")
    listed = page.locator("table.grid tbody td.num a").all_inner_texts()
    assert alice in listed and bob not in listed
    assert "of alice" in page.locator("#live .hint").first.inner_text()
    still_picture(page, artifacts, "daily-filters.png", "dashboard-filters.png")


def test_the_chart_counts_the_last_hour(page: Any, dash_server: ServerProcess,
                                        dash_worker: MLQ, artifacts: Path) -> None:
    page.goto(dash_server.url + "/")
    chart = page.locator("svg#history")
    before = int(chart.get_attribute("data-completed")), int(chart.get_attribute("data-failed"))
    for msg in ("one", "two", "fail"):
        _ran(dash_server, dash_worker, msg)
    page.reload()
    after = int(chart.get_attribute("data-completed")), int(chart.get_attribute("data-failed"))
    assert after == (before[0] + 2, before[1] + 1)
    assert page.locator("svg#history rect.failed").count() >= 1  # drawn, not only counted
    assert chart.bounding_box()["width"] > 500  # it spans the page
    still_picture(page, artifacts, "daily-chart.png", "dashboard-history.png")


def test_every_page_fits_a_420_px_screen(page: Any, dash_server: ServerProcess,
                                         dash_worker: MLQ, artifacts: Path) -> None:
    job_id = _ran(dash_server, dash_worker, "fail")
    page.set_viewport_size({"width": 420, "height": 860})
    for path in ("/", "/ui/jobs", f"/ui/jobs/{job_id}", "/ui/workers", "/ui/functions",
                 "/ui/deadletters", "/ui/schedules"):
        page.goto(dash_server.url + path)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{path} scrolls sideways at 420 px"
    page.goto(dash_server.url + "/")
    still_picture(page, artifacts, "daily-narrow.png", "dashboard-narrow.png")
