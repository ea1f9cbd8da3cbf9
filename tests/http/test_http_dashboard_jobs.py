"""The dashboard's job list and job page as an operator works from them, against
the real server: a search by id, a progress column, how long a job waited and ran,
who finished it, and a Requeue button on a failed job."""

from __future__ import annotations

import re
import threading
from typing import Any

from mlq import MLQ
from tests.conftest import wait_until

from .conftest import ServerProcess

#: Released by the test: keeps a job running at 40 %.
RELEASE = threading.Event()


def work(msg: Any, context: dict[str, Any]) -> Any:
    if msg == "fail":
        raise ValueError("failing on purpose")
    if msg == "hold":
        context["update_progress"](40)
        RELEASE.wait(20)
    return msg


LISTENERS = [work]


def _row(page: str, job_id: str) -> str:
    found = re.search(rf'<tr>\s*<td class="num"><a href="/ui/jobs/{job_id}">.*?</tr>', page, re.S)
    assert found, f"no row for job {job_id}"
    return found.group(0)


def test_searching_an_id_opens_its_page(server: ServerProcess, worker: MLQ) -> None:
    job_id = server.post_job("done")
    worker.wait(job_id, 10)
    found = server.get(f"/ui/jobs?id={job_id}", allow_redirects=False)
    assert (found.status_code, found.headers["Location"]) == (302, f"/ui/jobs/{job_id}")
    assert server.get("/ui/jobs?id=999999999").status_code == 404  # the job page says so


def test_the_list_shows_progress_and_the_page_times_and_who_finished(
        server: ServerProcess, worker: MLQ) -> None:
    held = server.post_job("hold")
    wait_until(lambda: worker.get_job(held, fields=["progress"])["progress"] == 40, 10,
               "the job at 40 %")
    done = server.post_job("done", queue="other")  # the one worker slot is busy
    listing = server.get("/ui/jobs").text
    assert "<th class=\"num\">Progress</th>" in listing
    assert ">40 %<" in _row(listing, held) and ">—<" in _row(listing, done)
    RELEASE.set()
    worker.wait(held, 10)
    page = server.get(f"/ui/jobs/{held}").text
    finished_by = re.search(r'<td class="mono" id="finished-by">(.*?)</td>', page)
    assert finished_by and finished_by.group(1).endswith("#1")  # worker#attempt
    for cell in ("waited", "run-time"):
        shown = re.search(rf'<td id="{cell}">(.*?)</td>', page, re.S)
        assert shown and shown.group(1).strip() != "—", cell
    assert ">100 %<" in _row(server.get("/ui/jobs").text, held)


def test_a_failed_jobs_page_has_a_requeue_button(server: ServerProcess, worker: MLQ) -> None:
    job_id = server.post_job("fail")
    worker.wait(job_id, 10)
    page = server.get(f"/ui/jobs/{job_id}").text
    form = re.search(r'<form method="post" action="(/ui/deadletter/\d+/requeue)" id="requeue-job"',
                     page)
    assert form and form.group(1) == f"/ui/deadletter/{job_id}/requeue"
    assert 'id="requeue-job"' not in server.get(f"/ui/jobs/{server.post_job('x')}").text


def test_the_list_filters_by_owner_and_function(server: ServerProcess, worker: MLQ) -> None:
    alice = server.post_job("a", owner="alice", functions=["work"], queue="filters")
    bob = server.post_job("b", owner="bob", functions=["work"], queue="filters")
    other = server.post_job("c", owner="alice", functions=["other"], queue="filters")
    page = server.get("/ui/jobs?queue=filters&owner=alice&function=work").text
    shown = set(re.findall(r'<a href="/ui/jobs/(\d+)">', page))
    assert alice in shown and not shown & {bob, other}
    assert "no index of owners or functions" in page
    assert set(re.findall(r'<a href="/ui/jobs/(\d+)">',
                          server.get("/ui/jobs?queue=filters&owner=alice").text)) >= {alice, other}


def test_the_overview_charts_the_last_hour_from_per_minute_counts_in_redis(
        server: ServerProcess, worker: MLQ) -> None:
    def shown() -> tuple[int, int]:
        chart = re.search(r'<svg id="history"[^>]*data-completed="(\d+)" data-failed="(\d+)"',
                          server.get("/").text, re.S)
        assert chart, "no chart on the overview"
        return int(chart.group(1)), int(chart.group(2))

    before = shown()
    ids = [server.post_job("done") for _ in range(3)] + [server.post_job("fail")]
    for job_id in ids:
        worker.wait(job_id, 10)
    assert shown() == (before[0] + 3, before[1] + 1)
    # kept in Redis alone, each minute's count expiring by itself
    minute = [m for m in worker.listing.history(2) if m["completed"]][-1]["minute"]
    assert 0 < worker.client.ttl(worker.keys.history(minute)) <= 2 * 3600
