"""The dashboard in a real browser: live counts, a PNG result, a dead letter requeued by clicking."""

from __future__ import annotations

import io
import os
import shutil
import threading
import wave
from pathlib import Path
from typing import Any

from mlq import MLQ
from tests.http.conftest import REPO, ServerProcess, tiny_png

#: Released by the test at its end: keeps one job running, so the overview and the
#: screenshot show a running job with a progress bar.
RELEASE = threading.Event()
#: Messages that failed once already: a requeued dead letter then succeeds.
FAILED_ONCE: set[str] = set()


def tiny_wav() -> bytes:
    """A tenth of a second of silence as a real WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


def dash_listener(msg: Any, context: dict[str, Any]) -> Any:
    if msg == "png":
        return tiny_png()
    if msg == "wav":
        return tiny_wav()
    if msg == "bytes":
        return b"\x00\x01 not a known format"
    if msg == "text":
        return "plain <b>text</b>"
    if isinstance(msg, str) and msg.startswith("fail-once") and msg not in FAILED_ONCE:
        FAILED_ONCE.add(msg)
        raise ValueError(f"{msg}: failing the first time on purpose")
    if msg == "hold":
        context["update_progress"](40)
        RELEASE.wait(60)
    if msg == "story":
        return _story()
    return {"echo": msg}


#: Released by the streaming test once the first words showed: the rest follow.
STORY_GO_ON = threading.Event()


def _story() -> Any:
    yield "Once upon a time, "
    STORY_GO_ON.wait(30)
    yield from ["a model ", "streamed ", "its words."]
    yield {"tokens": 6}


LISTENERS = [dash_listener]


def cell(page: Any, key: str) -> str:
    return str(page.locator(f'[data-key="{key}"]').inner_text()).strip()


def wait_for_cell(page: Any, key: str, expected: str) -> None:
    """Wait (without reloading) until the live region shows `expected` in that cell."""
    page.wait_for_function(
        "([key, value]) => { const el = document.querySelector(`[data-key=\"${key}\"]`);"
        " return el && el.textContent.trim() === value; }", arg=[key, expected])


def test_overview_counts_change_live_and_results_render(
        page: Any, dash_server: ServerProcess, dash_worker: MLQ, artifacts: Path) -> None:
    RELEASE.clear()
    try:
        page.goto(dash_server.url + "/")
        assert page.title().startswith("Overview")
        page.evaluate("window.__notReloaded = 42")  # gone if the page were reloaded
        assert cell(page, "total-waiting") == "0"

        # jobs for a queue no worker takes: they stay waiting
        for n in range(3):
            dash_server.post_job(f"idle {n}", queue="batch")
        wait_for_cell(page, "batch-waiting", "3")
        wait_for_cell(page, "total-waiting", "3")

        # jobs the worker runs: completed, one held running, one failed (dead)
        png_id = dash_server.post_job("png")
        held_id = dash_server.post_job("hold")
        dead_id = dash_server.post_job("fail-once browser")
        for n in range(4):
            dash_server.post_job(f"quick {n}", queue="gpu")
        dash_worker.wait(png_id, 10)
        assert dash_worker.wait(dead_id, 10)["status"] == "failed"
        wait_for_cell(page, "total-running", "1")
        wait_for_cell(page, "total-dead", "1")
        wait_for_cell(page, "gpu-completed", "4")
        assert page.evaluate("window.__notReloaded") == 42, "the page was reloaded"
        page.wait_for_timeout(2500)  # one more refresh, so the rate is shown
        # a still picture: no yellow flash of the numbers that just changed
        page.evaluate("document.querySelectorAll('.changed').forEach(e => e.classList.remove('changed'))")
        page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
        if os.environ.get("MLQ_UPDATE_SCREENSHOT"):
            shutil.copyfile(artifacts / "overview.png", REPO / "docs" / "dashboard.png")

        # a job page with its PNG result rendered
        page.goto(f"{dash_server.url}/ui/jobs/{png_id}")
        image = page.locator("#result-image")
        image.wait_for()
        page.wait_for_function("() => { const i = document.getElementById('result-image');"
                               " return i.complete && i.naturalWidth > 0; }")
        assert page.evaluate("document.getElementById('result-image').naturalWidth") == 1
        page.screenshot(path=str(artifacts / "job-png.png"), full_page=True)

        # the running job's page: a progress bar at 40 %
        page.goto(f"{dash_server.url}/ui/jobs/{held_id}")
        assert page.locator("progress").get_attribute("value") == "40"
        page.screenshot(path=str(artifacts / "job-running.png"), full_page=True)
        # ... which follows the job to its end without a reload, result included
        page.evaluate("window.__notReloaded = 7")
        RELEASE.set()
        page.locator("h1 .badge.completed").wait_for()
        assert page.locator("progress").get_attribute("value") == "100"
        assert '"echo": "hold"' in page.locator("#result-text").inner_text()
        assert page.evaluate("window.__notReloaded") == 7

        # the jobs list, filtered by status
        page.goto(f"{dash_server.url}/ui/jobs?status=completed&queue=gpu")
        assert page.locator("tbody tr").count() == 4
        page.goto(f"{dash_server.url}/ui/workers")
        assert page.locator("tr.alive").count() >= 1
        page.screenshot(path=str(artifacts / "workers.png"), full_page=True)
        page.goto(f"{dash_server.url}/ui/functions")
        assert "dash_listener" in page.locator("table").inner_text()
    finally:
        RELEASE.set()


def test_requeue_a_dead_letter_by_clicking(
        page: Any, dash_server: ServerProcess, dash_worker: MLQ, artifacts: Path) -> None:
    job_id = dash_server.post_job("fail-once clicked")
    assert dash_worker.wait(job_id, 10)["status"] == "failed"
    page.goto(dash_server.url + "/ui/deadletters")
    row = page.locator(f"#dead-{job_id}")
    assert "failing the first time on purpose" in row.inner_text()
    page.screenshot(path=str(artifacts / "deadletters.png"), full_page=True)

    # dismissing the confirmation changes nothing
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Requeue").click()
    page.wait_for_timeout(300)
    assert job_id in [str(r["id"]) for r in dash_worker.dead_letters()]

    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator(f"#dead-{job_id}").get_by_role("button", name="Requeue").click()
    page.locator(".notice").wait_for()
    assert messages == [f"Requeue job {job_id}?"]
    assert page.locator(".notice").inner_text() == "Requeued 1 job(s)."
    assert dash_worker.wait(job_id, 10)["status"] == "completed"  # ran again, and passed
    assert job_id not in [str(r["id"]) for r in dash_worker.dead_letters()]
    page.screenshot(path=str(artifacts / "deadletters-requeued.png"), full_page=True)


def test_result_previews(page: Any, dash_server: ServerProcess, dash_worker: MLQ,
                         artifacts: Path) -> None:
    ids = {msg: dash_server.post_job(msg) for msg in ("wav", "bytes", "text", "json")}
    for job_id in ids.values():
        dash_worker.wait(job_id, 10)

    page.goto(f"{dash_server.url}/ui/jobs/{ids['wav']}")  # audio, playable
    page.wait_for_function("() => { const a = document.getElementById('result-audio');"
                           " return a && a.readyState >= 1 && a.duration > 0; }")
    assert abs(page.evaluate("document.getElementById('result-audio').duration") - 0.1) < 0.01
    page.screenshot(path=str(artifacts / "job-audio.png"), full_page=True)

    page.goto(f"{dash_server.url}/ui/jobs/{ids['bytes']}")  # bytes: a download link
    link = page.locator("#result-download")
    assert link.get_attribute("download") == f"result-{ids['bytes']}.bin"
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == b"\x00\x01 not a known format"

    page.goto(f"{dash_server.url}/ui/jobs/{ids['text']}")  # text: shown, never as HTML
    assert page.locator("#result-text").inner_text() == "plain <b>text</b>"

    page.goto(f"{dash_server.url}/ui/jobs/{ids['json']}")  # JSON: pretty-printed
    assert page.locator("#result-text").inner_text() == '{\n  "echo": "json"\n}'


def test_the_job_page_shows_streamed_chunks_as_they_come(
        page: Any, dash_server: ServerProcess, dash_worker: MLQ, artifacts: Path) -> None:
    job_id = dash_server.post_job("story")
    page.goto(f"{dash_server.url}/ui/jobs/{job_id}")
    output = page.locator("#chunk-text")
    output.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('chunk-text').textContent"
                           " === 'Once upon a time, '")
    # the job still runs: this arrived live, not with a reload after the end
    assert dash_worker.get_job(job_id, fields=["status"])["status"] == "started"
    STORY_GO_ON.set()
    page.wait_for_function("() => document.getElementById('chunk-count').textContent"
                           " === '(5 chunks)'")
    assert output.inner_text() == 'Once upon a time, a model streamed its words.{"tokens":6}\n'
    page.screenshot(path=str(artifacts / "job-streamed.png"), full_page=True)
