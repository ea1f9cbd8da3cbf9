"""A page on another origin, open in the user's browser, cannot make the server or a
worker run code (docs/SECURITY.md, the drive-by attack on a default set-up)."""

from __future__ import annotations

import base64
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ
from tests.http.conftest import ServerProcess

ATTACK_PAGE = """<!doctype html>
<title>innocent page</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="upload" method="POST" action="TARGET/consumer" enctype="text/plain" target="sink1">
  <input name='{"py/b64": "B64", "name": "canary' value='"}'>
</form>
<form id="job" method="POST" action="TARGET/jobs" enctype="text/plain" target="sink2">
  <input name='{"msg": "' value='"}'>
</form>
<script>
async function attack() {
  const envelope = JSON.stringify({"py/b64": "B64", "name": "canary"});
  const tries = [
    ["/consumer", {method: "POST", mode: "no-cors", body: envelope}],
    ["/consumer", {method: "POST", mode: "no-cors", body: envelope,
                   headers: {"Content-Type": "text/plain"}}],
    ["/consumer?name=canary", {method: "POST", mode: "no-cors", body: envelope}],
    ["/jobs", {method: "POST", mode: "no-cors",
               body: JSON.stringify({msg: 1, functions: ["canary"]})}],
  ];
  for (const [path, init] of tries) {
    await fetch("TARGET" + path, init).catch(() => null);
  }
  return tries.length;
}
</script>
"""


class Canary:
    """Unpickling this creates a file: proof that someone ran the uploaded pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def serve_page(html: str) -> tuple[ThreadingHTTPServer, int]:
    """The attacker's site: one page, on a loopback port of its own."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site, site.server_address[1]


@pytest.fixture
def victim(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, MLQ]]:
    """The default set-up: a server with no token, and a worker of its namespace."""
    namespace = f"d_{uuid.uuid4().hex[:10]}"
    server = ServerProcess(namespace=namespace, redis_url=redis_url,
                           log_path=tmp_path / "server.log").start()
    worker = MLQ(namespace, redis_url=redis_url, heartbeat_interval=0.2)
    worker.create_listener(None)
    yield server, worker
    worker.shutdown(timeout=10)
    server.stop()
    worker.clear_all()


@pytest.mark.parametrize("site_host", ["localhost", "127.0.0.1"])  # cross-site, same-site
def test_a_page_on_another_origin_cannot_upload_code_or_post_jobs(
        page: Any, victim: tuple[ServerProcess, MLQ], tmp_path: Path, site_host: str) -> None:
    server, worker = victim
    canary = tmp_path / "ran"
    payload = base64.b64encode(pickle.dumps(Canary(canary))).decode()
    html = ATTACK_PAGE.replace("TARGET", server.url).replace("B64", payload)
    site, port = serve_page(html)
    try:
        page.goto(f"http://{site_host}:{port}/")
        assert page.evaluate("attack()") == 4
        for form, frame in (("upload", "sink1"), ("job", "sink2")):
            with page.expect_event("framenavigated", predicate=lambda f, n=frame: f.name == n):
                page.evaluate(f"document.getElementById('{form}').submit()")
        answered = page.frame(name="sink1").content()
        # a window, not a wait: nothing may run in it. The worker follows the registry
        # by pub/sub, so anything stored would have been loaded and run by its end
        time.sleep(1.0)
    finally:
        site.shutdown()
        site.server_close()
    assert not canary.exists(), "the uploaded pickle ran"
    assert "cross-site request refused" in answered
    assert server.get("/consumer").json() == []
    assert server.get("/jobs/count").text == "0"
    # no attempt took an id: the first post of the server's own clients gets job 1
    job_id = server.post_job({"ok": 1})
    assert job_id == "1"
    assert worker.wait(job_id, timeout=10)["status"] in ("completed", "failed")


def script_text(msg: Any, *args: Any) -> str:
    return "window.__pwned = (window.__pwned || 0) + 1;"


def test_a_result_is_no_script_even_on_the_servers_own_pages(
        page: Any, victim: tuple[ServerProcess, MLQ]) -> None:
    server, worker = victim
    worker.create_listener(script_text)
    job_id = server.post_job("go", functions=["script_text"])
    assert worker.wait(job_id, timeout=10)["status"] == "completed"
    page.goto(f"{server.url}/ui/jobs/{job_id}")  # a page of the dashboard's own origin
    for name in ("result.js", "result.mjs", "result"):
        outcome = page.evaluate("""src => new Promise(done => {
            const tag = document.createElement("script");
            tag.src = src;
            tag.onload = () => done("loaded");
            tag.onerror = () => done("refused");
            document.head.appendChild(tag);
        })""", f"/jobs/{job_id}/{name}")
        assert outcome == "refused", name
    assert page.evaluate("window.__pwned === undefined")
