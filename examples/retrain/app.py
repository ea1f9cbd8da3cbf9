"""The web app of the retrain example: one page, a Retrain button, live progress, the accuracy.

It is your app, not MLQ's server: it posts the job and follows it through the
`mlq` library, and streams the job's progress to the page as server-sent events
from its own origin, so the page needs no CORS and MLQ's server need not run.

    python -m examples.retrain.app          # http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request

from mlq import MLQ, JobNotFound

PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Digits classifier</title>
<h1>Digits classifier</h1>
<p><button id="retrain">Retrain</button>
<progress id="bar" max="100" value="0" hidden></progress> <span id="status"></span></p>
<p id="accuracy"></p>
<script>
const button = document.getElementById("retrain"), bar = document.getElementById("bar"),
      status = document.getElementById("status"), accuracy = document.getElementById("accuracy");
button.onclick = async () => {
  button.disabled = true; bar.hidden = false; bar.value = 0; accuracy.textContent = "";
  const {job_id} = await (await fetch("retrain", {method: "POST"})).json();
  status.textContent = `job ${job_id} queued`;
  const events = new EventSource(`retrain/${job_id}/events`);
  events.onmessage = (e) => {          // each status or progress change
    const state = JSON.parse(e.data);
    bar.value = state.progress ?? 0;
    status.textContent = `job ${job_id} ${state.status}`;
  };
  events.addEventListener("done", (e) => {
    events.close();                     // or the browser would reconnect
    const end = JSON.parse(e.data);
    bar.value = 100; button.disabled = false;
    status.textContent = `job ${job_id} ${end.status}`;
    accuracy.textContent = end.status === "completed"
      ? `New accuracy: ${(100 * end.accuracy).toFixed(1)} %` : `Failed: ${end.error}`;
  });
};
</script>
</html>
"""


def outcome(q: MLQ, job_id: str) -> dict[str, Any]:
    """What the page needs of a job: its state, and the accuracy once it has one."""
    record = q.get_job(job_id)
    answer = {"id": record["id"], "status": record["status"], "progress": record["progress"]}
    if record["status"] == "completed":
        answer["accuracy"] = record["result"]["accuracy"]
    elif record["status"] == "failed":
        lines = (record["error"] or "failed").strip().splitlines()
        answer["error"] = lines[-1] if lines else "failed"  # a traceback's last line says why
    return answer


def create_app(q: MLQ) -> Flask:
    app = Flask(__name__)

    @app.errorhandler(JobNotFound)
    def not_found(exc: JobNotFound) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 404

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.post("/retrain")
    def start() -> tuple[Response, int]:
        # a JSON body may set "epochs"; the button sends none
        options = request.get_json(silent=True) or {}
        msg = {"epochs": int(options.get("epochs", 20))}
        # name the listener: a job that names none runs every listener of the namespace
        return jsonify(job_id=q.post(msg, functions=["retrain"])), 202

    @app.get("/retrain/<job_id>")
    def state(job_id: str) -> Response:
        """The same as the stream's last event, for clients that poll."""
        return jsonify(outcome(q, job_id))

    @app.get("/retrain/<job_id>/events")
    def events(job_id: str) -> Response:
        changes = q.watch(job_id)  # JobNotFound (404) here, before the stream starts

        def stream() -> Iterator[str]:
            # q.watch is pushed by Redis pub/sub: the state now, then each change
            for change in changes:
                if change is None:
                    yield ": keep-alive\n\n"  # quiet for a while: keep proxies from closing
                elif change["status"] in ("completed", "failed"):
                    break
                else:
                    yield f"data: {json.dumps(change)}\n\n"
            yield f"event: done\ndata: {json.dumps(outcome(q, job_id))}\n\n"

        return Response(stream(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def main() -> None:
    # the same defaults and variables as `controller consumer`, so both find one Redis
    q = MLQ(os.environ.get("MLQ_NAMESPACE", "mlq_default"),
            redis_url=os.environ.get("MLQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    create_app(q).run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True)


if __name__ == "__main__":
    main()
