"""The examples under examples/, each run for real: workers as `controller consumer`
subprocesses on the session's Redis, the web apps served on real sockets."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

from mlq import MLQ
from mlq.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


def example_env(**extra: str) -> dict[str, str]:
    """This environment without MLQ's flag variables; the repository importable, as if installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@contextmanager
def running(command: list[str], log: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess (output to `log`) for the block; SIGTERM and waited for at the end."""
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=ROOT, env=env or example_env(),
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # running jobs finish, then it exits
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def consumer(redis_url: str, namespace: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "controller", "consumer", "--redis_url", redis_url,
            "--namespace", namespace, *options]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """A WSGI app on a real socket (werkzeug's threaded server) for the block; its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def sse(response: requests.Response) -> Iterator[dict[str, Any]]:
    """The events of a text/event-stream as they arrive: {'event': name, 'data': parsed},
    and {'event': 'comment'} for a keep-alive (a chance to check a deadline)."""
    event: dict[str, Any] = {"event": "message"}
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):  # type: ignore[call-overload]
        if line.startswith(":"):
            yield {"event": "comment"}
        elif line.startswith("event:"):
            event["event"] = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            event["data"] = json.loads(line.partition(":")[2])
        elif line == "" and "data" in event:
            yield event
            event = {"event": "message"}


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path,
                 timeout: float = 30.0) -> None:
    # a subprocess gives no event to await, so poll /healthz
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)  # the pause between two polls
    raise AssertionError(f"{url} not healthy within {timeout} s:\n{log.read_text()}")


def test_retrain_web_app_shows_progress_then_the_new_accuracy(
        redis_url: str, namespace: str, q: MLQ, tmp_path: Path) -> None:
    from examples.retrain.app import create_app

    log = tmp_path / "worker.log"
    worker = consumer(redis_url, namespace, "--import", "examples.retrain.listeners:retrain")
    with running(worker, log) as process, serving(create_app(q)) as app, \
            requests.Session() as http:
        page = http.get(app + "/", timeout=10)
        assert page.status_code == 200 and ">Retrain</button>" in page.text
        assert "new EventSource(`retrain/${job_id}/events`)" in page.text
        posted = http.post(app + "/retrain", timeout=10)
        assert posted.status_code == 202
        job_id = posted.json()["job_id"]
        events = []
        deadline = time.monotonic() + 45  # the worker's first job includes its start-up
        with http.get(f"{app}/retrain/{job_id}/events", stream=True, timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            for event in sse(stream):
                if event["event"] != "comment":
                    events.append(event)
                if event["event"] == "done" or time.monotonic() > deadline \
                        or process.poll() is not None:
                    break
        polled = http.get(f"{app}/retrain/{job_id}", timeout=10).json()
        assert http.get(app + "/retrain/999999", timeout=10).status_code == 404
    assert events and events[-1]["event"] == "done", (events, log.read_text())
    done = events[-1]["data"]
    assert done["status"] == "completed", (done, log.read_text())
    assert done["accuracy"] > 0.8 and polled == done
    progress = [e["data"]["progress"] for e in events[:-1] if e["data"]["status"] == "started"]
    assert len([p for p in progress if 0 < p < 100]) >= 5, events  # seen live, epoch by epoch
    assert progress == sorted(progress)
    record = q.get_job(job_id)
    assert record["short_result"].startswith("accuracy 0.")
    assert record["result"]["train_size"] == 1347  # 75 % of the 1,797 digits


def test_image_job_opens_at_result_png(redis_url: str, namespace: str, q: MLQ,
                                       tmp_path: Path) -> None:
    """(q clears the namespace afterwards.)"""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "consumer.log"
    worker = consumer(redis_url, namespace, "--import", "examples.image.listeners:mandelbrot",
                      "--server", "--server_port", str(port))
    with running(worker, log) as process, requests.Session() as http:
        wait_healthy(url, process, log)
        posted = http.post(url + "/jobs", timeout=10, json={
            "msg": {"width": 160, "height": 100}, "functions": ["mandelbrot"]})
        assert posted.status_code == 200, posted.text
        job_id = posted.text
        # the event stream closes once the job has ended
        with http.get(f"{url}/jobs/{job_id}/events", stream=True, timeout=30) as stream:
            events = [e for e in sse(stream) if e["event"] != "comment"]
        assert events and events[-1]["data"]["status"] == "completed", (events, log.read_text())
        image = http.get(f"{url}/jobs/{job_id}/result.png", timeout=10)
    assert image.status_code == 200
    assert image.headers["Content-Type"] == "image/png"
    png = image.content
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # decode it by hand: IHDR says 160x100 8-bit RGB, and IDAT holds every scanline
    assert png[12:16] == b"IHDR" and struct.unpack(">IIBB", png[16:26]) == (160, 100, 8, 2)
    idat_length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    assert len(zlib.decompress(png[41:41 + idat_length])) == 100 * (1 + 160 * 3)
    assert png.endswith(b"IEND\xaeB`\x82")


def test_notebook_script_submits_and_maps_on_workers_without_its_code(
        redis_url: str, namespace: str, q: MLQ, tmp_path: Path) -> None:
    """(q clears the namespace afterwards.)"""
    log = tmp_path / "workers.log"
    # no --import: the workers get the script's functions only through the jobs
    with running(consumer(redis_url, namespace, "--concurrency", "2"), log):
        done = subprocess.run(
            [sys.executable, "examples/notebook/notebook.py"], cwd=ROOT, timeout=60,
            env=example_env(MLQ_REDIS_URL=redis_url, MLQ_NAMESPACE=namespace),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr, log.read_text())
    lines = done.stdout.splitlines()
    assert lines[0].startswith("job 1: y = 2.99x + 2.00"), lines
    assert [line.split()[2] for line in lines[1:5]] == ["0.01", "0.03", "0.1", "0.3"]
    assert lines[5:] == ["best learning rate: 0.3",
                         "remote error: the learning rate must be positive, not -1.0"]
    assert "job 1" in done.stderr and "100%" in done.stderr  # tqdm's bar, on stderr
    assert "completed" in done.stderr
