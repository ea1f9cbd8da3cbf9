"""The dashboard's part of a job's life (docs/lifecycle.md), in a real browser: cancel
a job from its page, add and remove schedules, pause and resume a queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mlq import MLQ
from mlq.job import STATUSES
from tests.http.conftest import ServerProcess

from .conftest import still_picture


def stop_when_cancelled(msg: Any, context: dict[str, Any]) -> Any:
    """Runs until someone cancels it, as a long job that checks is meant to."""
    if msg != "run until cancelled":
        return msg
    deadline = time.monotonic() + 30
    while not context["cancelled"]() and time.monotonic() < deadline:
        context["update_progress"](10)
        time.sleep(0.05)
    return "stopped"


LISTENERS = [stop_when_cancelled]


USER_TOKEN = "user-token-of-the-lifecycle-ui-tests"
ADMIN_TOKEN = "admin-token-of-the-lifecycle-ui-tests"


@pytest.fixture(scope="module")
def scoped_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                  browser_namespace: str) -> Iterator[ServerProcess]:
    """A server of the same namespace with a user token and an admin token."""
    server = ServerProcess(namespace=browser_namespace, redis_url=redis_url, token=USER_TOKEN,
                           admin_token=ADMIN_TOKEN,
                           log_path=tmp_path_factory.mktemp("dash") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lq(redis_url: str, browser_namespace: str) -> Iterator[MLQ]:
    """A client of the dashboard's namespace that consumes nothing."""
    q = MLQ(browser_namespace, redis_url=redis_url)
    yield q
    q.clear_all()


def accept_next_dialog(page: Any) -> list[str]:
    """Accept the next confirm() and keep its text."""
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    return messages


def test_cancel_a_scheduled_job_from_its_page(page: Any, dash_server: ServerProcess,
                                              lq: MLQ, artifacts: Path) -> None:
    job_id = lq.post({"report": "weekly"}, delay=600, expires=3600, retries=3, backoff=2,
                     key="report:weekly")
    follower = lq.post({"merge": True}, depends_on=[job_id])
    page.goto(f"{dash_server.url}/ui/jobs/{follower}")
    assert page.locator("h1 .badge").inner_text() == "deferred"
    page.locator("#depends-on").get_by_role("link", name=job_id).click()

    # the lifecycle fields of the record
    page.wait_for_url(f"**/ui/jobs/{job_id}")
    assert page.locator("h1 .badge").inner_text() == "scheduled"
    assert "scheduled; due in" in page.locator('[data-key="progress"]').inner_text()
    assert "(in 10 min)" in page.locator("#next-attempt").inner_text()
    assert "(in 60 min)" in page.locator("#expires-at").inner_text()
    assert page.locator("#dedup-key").inner_text() == "report:weekly"
    attempts = page.locator("#attempts").inner_text()
    assert "0 started" in attempts and "up to 3" in attempts and "up to 2 s" in attempts
    still_picture(page, artifacts, "job-cancel.png", "dashboard-cancel.png")

    messages = accept_next_dialog(page)
    page.locator("#cancel-job").click()
    page.locator(".notice").wait_for()
    assert messages == [f"Cancel job {job_id}? It will not run."]
    assert page.locator(".notice").inner_text() == "Job cancelled: it will not run."
    assert page.locator("h1 .badge").inner_text() == "cancelled"
    assert page.locator("#cancel-job").count() == 0  # an ended job has no button
    assert lq.get_job(job_id)["status"] == "cancelled"
    # its dependent fails with it, and says why
    assert lq.get_job(follower)["status"] == "failed"
    page.goto(f"{dash_server.url}/ui/jobs/{follower}")
    assert "(dependency)" in page.locator(".record").inner_text()


def test_stop_a_running_job_from_its_page(page: Any, dash_server: ServerProcess,
                                          dash_worker: MLQ, lq: MLQ) -> None:
    job_id = lq.post("run until cancelled")
    page.goto(f"{dash_server.url}/ui/jobs/{job_id}")
    page.locator("h1 .badge.started").wait_for()
    messages = accept_next_dialog(page)
    page.locator("#cancel-job").click()
    page.locator(".notice").wait_for()
    assert messages == [f"Ask running job {job_id} to stop?"]
    assert "Asked the running job to stop" in page.locator(".notice").inner_text()
    assert lq.wait(job_id, 10)["status"] == "cancelled"
    page.locator("h1 .badge.cancelled").wait_for()  # the live page follows it to its end


def test_add_and_remove_schedules(page: Any, dash_server: ServerProcess, dash_worker: MLQ,
                                  lq: MLQ, artifacts: Path) -> None:
    page.goto(dash_server.url + "/")
    page.get_by_role("link", name="Schedules").click()
    page.wait_for_url("**/ui/schedules")
    assert "No schedules" in page.locator("table").inner_text()

    for name, cron, zone, queue, msg in (
            ("nightly-report", "0 2 * * *", "Europe/Berlin", "batch", '{"report": "daily"}'),
            ("hourly-ping", "0 * * * *", "", "", "ping")):
        form = page.locator("form.add-schedule")
        form.get_by_label("Name").fill(name)
        form.get_by_label("Cron").fill(cron)
        form.get_by_label("Time zone").fill(zone)
        form.get_by_label("Queue").fill(queue)
        form.get_by_label("Message").fill(msg)
        form.get_by_role("button", name="Save schedule").click()
        page.wait_for_url("**/ui/schedules?done=added")
        assert page.locator(".notice").inner_text() == "Schedule saved."

    stored = {s["name"]: s for s in lq.schedules()}
    assert stored["nightly-report"]["msg"] == {"report": "daily"}  # JSON is parsed
    assert (stored["nightly-report"]["timezone"], stored["nightly-report"]["queue"]) == \
        ("Europe/Berlin", "batch")
    assert stored["hourly-ping"]["msg"] == "ping"  # text stays text
    assert (stored["hourly-ping"]["timezone"], stored["hourly-ping"]["queue"]) == \
        ("UTC", "default")
    row = page.locator("#schedule-nightly-report")
    assert "0 2 * * *" in row.inner_text() and "Europe/Berlin" in row.inner_text()
    assert "never" in row.inner_text()

    # a schedule whose slot went by a moment ago (as if defined yesterday): the
    # worker's sweep posts its job, and the live row links to it
    lq.schedule("morning-digest", "30 6 * * *", {"digest": "morning"}, queue="batch",
                now=time.time() - 86400)
    job_link = page.locator("#schedule-morning-digest td.num a")
    job_link.wait_for()
    fired = {s["name"]: s for s in lq.schedules()}["morning-digest"]["last_job"]
    assert job_link.inner_text() == fired
    assert "ago" in page.locator("#schedule-morning-digest").inner_text()
    still_picture(page, artifacts, "schedules.png", "dashboard-schedules.png")
    job_link.click()
    page.wait_for_url(f"**/ui/jobs/{fired}")
    assert '"digest": "morning"' in page.locator("pre.json").inner_text()
    page.go_back()
    row = page.locator("#schedule-nightly-report")

    messages = accept_next_dialog(page)
    row.get_by_role("button", name="Remove").click()
    page.wait_for_url("**/ui/schedules?done=removed")
    assert messages == ["Remove schedule nightly-report? Jobs it already posted stay."]
    assert lq.get_job(fired)["status"] == "queued"  # nobody takes queue batch here
    assert page.locator("#schedule-nightly-report").count() == 0
    assert page.locator("#schedule-hourly-ping").count() == 1
    assert [s["name"] for s in lq.schedules()] == ["hourly-ping", "morning-digest"]
    lq.unschedule("hourly-ping")
    lq.unschedule("morning-digest")


def test_a_bad_cron_shows_why_and_stores_nothing(page: Any, dash_server: ServerProcess,
                                                 lq: MLQ) -> None:
    page.goto(dash_server.url + "/ui/schedules")
    form = page.locator("form.add-schedule")
    form.get_by_label("Name").fill("broken")
    form.get_by_label("Cron").fill("every day at noon")
    form.get_by_label("Message").fill('{"a": 1}')
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.get_by_role("button", name="Save schedule").click()
    assert answer.value.status == 400
    error = page.locator("#schedule-error")
    assert "cron expression 'every day at noon' is not valid" in error.inner_text()
    assert lq.schedules() == []
    # the form keeps what was typed, to be corrected
    assert page.locator("form.add-schedule").get_by_label("Name").input_value() == "broken"

    form = page.locator("form.add-schedule")
    form.get_by_label("Cron").fill("0 12 * * *")
    form.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    form.get_by_role("button", name="Save schedule").click()
    assert "unknown timezone 'Mars/Olympus_Mons'" in page.locator("#schedule-error").inner_text()
    assert lq.schedules() == []


def test_pause_and_resume_a_queue_from_the_overview(page: Any, dash_server: ServerProcess,
                                                    lq: MLQ) -> None:
    lq.post("waits", queue="held")
    lq.post("later", queue="held", delay=600)
    page.goto(dash_server.url + "/")
    row = page.locator("#queue-held")
    assert row.locator('[data-key="held-waiting"]').inner_text() == "1"
    assert row.locator('[data-key="held-scheduled"]').inner_text() == "1"
    for column in ("scheduled", "deferred", "cancelled", "expired"):
        assert page.locator(f'[data-key="total-{column}"]').count() == 1
    assert row.locator(".badge.paused").count() == 0

    messages = accept_next_dialog(page)
    row.get_by_role("button", name="Pause").click()
    page.locator("#queue-held .badge.paused").wait_for()
    assert messages == ["Pause queue held? Workers take nothing from it until it is resumed."]
    assert lq.paused() == ["held"]

    page.locator("#queue-held").get_by_role("button", name="Resume").click()
    page.locator("#queue-held").get_by_role("button", name="Pause").wait_for()
    assert page.locator("#queue-held .badge.paused").count() == 0
    assert lq.paused() == []


def test_the_new_forms_need_the_csrf_token(dash_server: ServerProcess, lq: MLQ) -> None:
    job_id = lq.post("stays", queue="held", delay=600)
    for path in (f"/ui/jobs/{job_id}/cancel", "/ui/queues/held/pause", "/ui/schedules",
                 "/ui/schedules/any/remove"):
        answer = requests.post(dash_server.url + path, data={"name": "x", "cron": "* * * * *",
                                                             "msg": "1"}, timeout=10)
        assert answer.status_code == 403, path
        assert "CSRF" in answer.text
    assert lq.get_job(job_id)["status"] == "scheduled"
    assert lq.paused() == [] and lq.schedules() == []


def test_the_status_filter_offers_every_status(page: Any, dash_server: ServerProcess,
                                               lq: MLQ) -> None:
    job_id = lq.post("filtered", queue="held", delay=600)
    page.goto(dash_server.url + "/ui/jobs")
    options = page.locator('select[name="status"] option').evaluate_all(
        "options => options.map(o => o.value)")
    assert options == ["", *STATUSES]
    page.locator('select[name="status"]').select_option("scheduled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/jobs?status=scheduled*")
    assert page.get_by_role("link", name=job_id, exact=True).count() == 1


def test_a_user_session_cancels_jobs_but_only_an_admin_pauses(
        page: Any, scoped_server: ServerProcess, lq: MLQ) -> None:
    url = scoped_server.url
    job_id = lq.post("user's", queue="held", delay=600)
    lq.post("waits", queue="held")
    page.goto(f"{url}/ui/jobs/{job_id}")
    page.fill("input[name=token]", USER_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/ui/jobs/{job_id}")
    accept_next_dialog(page)
    page.locator("#cancel-job").click()  # its CSRF token is the session's
    page.locator("h1 .badge.cancelled").wait_for()
    assert lq.get_job(job_id)["status"] == "cancelled"

    # pausing holds up everyone's jobs: the admin scope, as over the API
    page.goto(url + "/")
    accept_next_dialog(page)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.locator("#queue-held").get_by_role("button", name="Pause").click()
    assert answer.value.status == 403
    assert "admin token" in page.locator(".notice.error").inner_text()
    assert lq.paused() == []
