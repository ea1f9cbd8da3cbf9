"""A FastAPI app on MLQ's asyncio client: post a generation job, stream its words to
the browser as server-sent events, and show where it stands in line until it starts.

    uvicorn examples.fastapi.app:app --port 8000      # http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from mlq import JobNotFound
from mlq.aio import AsyncMLQ

#: How often the line position is read again while the job waits.
POSITION_EVERY = 1.0

PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Generate</title>
<h1>Generate</h1>
<form id="ask"><input id="prompt" value="What are queues for?" size="40">
<button>Ask</button></form>
<p id="line"></p><p id="answer"></p>
<script>
const form = document.getElementById("ask"), line = document.getElementById("line"),
      answer = document.getElementById("answer");
form.onsubmit = async (e) => {
  e.preventDefault(); answer.textContent = ""; line.textContent = "posting...";
  const {job_id} = await (await fetch("generate", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({prompt: document.getElementById("prompt").value})})).json();
  const events = new EventSource(`generate/${job_id}/events`);  // resumes by itself
  events.addEventListener("queued", (e) => {
    const s = JSON.parse(e.data);
    line.textContent = s.position == null ? `job ${job_id} ${s.status}`
      : `job ${job_id}: #${s.position + 1} in line` + (s.eta_s == null ? "" : `, ~${s.eta_s} s`);
  });
  events.addEventListener("chunk", (e) => {
    line.textContent = `job ${job_id} started`; answer.textContent += JSON.parse(e.data);
  });
  events.addEventListener("done", (e) => {
    events.close(); line.textContent = `job ${job_id} ${JSON.parse(e.data).status}`;
  });
};
</script>
</html>
"""


class Question(BaseModel):
    prompt: str
    pause: float = 0.05


def sse(event: str, data: Any, entry_id: str | None = None) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


def standing(record: dict[str, Any]) -> dict[str, Any]:
    """Where a job stands: its status, and while it waits its place in line
    (`position` 0 runs next; get_job gives it where MLQ computes positions)."""
    return {"status": record["status"], "position": record.get("position"),
            "eta_s": record.get("eta_s")}


async def job_events(q: AsyncMLQ, job_id: str, after: str) -> AsyncIterator[str]:
    """The job's standing while nothing streams yet, then a `chunk` event per chunk
    (its stream entry id as the event id, so a reconnect resumes after it), then
    `done`."""
    chunks = q.stream(job_id, after).__aiter__()
    next_chunk = asyncio.ensure_future(chunks.__anext__())
    shown, streaming = None, after != "0-0"
    if not streaming:
        shown = standing(await q.get_job(job_id))
        yield sse("queued", shown)
    try:
        while True:
            done, _ = await asyncio.wait({next_chunk}, timeout=POSITION_EVERY)
            if not done:
                now = None if streaming else standing(await q.get_job(job_id))
                if now is not None and now != shown:
                    shown = now
                    yield sse("queued", now)
                else:
                    yield ": keep-alive\n\n"
                continue
            try:
                entry_id, chunk = next_chunk.result()
            except StopAsyncIteration:
                break
            streaming = True
            yield sse("chunk", chunk, entry_id)
            next_chunk = asyncio.ensure_future(chunks.__anext__())
    finally:
        next_chunk.cancel()  # the browser went away: stop reading for it
        with suppress(asyncio.CancelledError, StopAsyncIteration):
            await next_chunk
    record = await q.get_job(job_id, fields=["status", "error"])
    yield sse("done", {"status": record["status"], "error": record["error"]})


def create_app(redis_url: str | None = None, namespace: str | None = None) -> FastAPI:
    redis_url = redis_url or os.environ.get("MLQ_REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = namespace or os.environ.get("MLQ_NAMESPACE", "mlq_default")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncMLQ(namespace, redis_url=redis_url) as q:
            app.state.q = q
            yield

    app = FastAPI(title="MLQ generation example", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/generate", status_code=202)
    async def generate(question: Question) -> dict[str, str]:
        job_id = await app.state.q.post({"prompt": question.prompt, "pause": question.pause},
                                         functions=["generate"])
        return {"job_id": job_id}

    @app.get("/generate/{job_id}/events")
    async def events(job_id: str, last_event_id: str | None = Header(None)) -> StreamingResponse:
        try:
            await app.state.q.get_job(job_id, fields=["status"])
        except JobNotFound:
            raise HTTPException(404, f"no job {job_id}") from None
        return StreamingResponse(job_events(app.state.q, job_id, last_event_id or "0-0"),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app


app = create_app()
