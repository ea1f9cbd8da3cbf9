"""GET /workers: what every worker's heartbeat says, for scripts and monitoring
(the dashboard's Workers page and `controller workers` show the same)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response

from .helpers import current_state, json_response
from .openapi import _json, _op
from .overview import describe_worker

bp = Blueprint("workers", __name__)


@bp.get("/workers")
def workers() -> Response:
    """Every known worker: live ones, and dead ones until the reaper took their jobs back."""
    now = time.time()
    return json_response({"workers": [describe_worker(info, now)
                                      for info in current_state().mlq.workers()]})


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


_NUMBER_OR_NULL = {"type": ["number", "null"]}
_WORKER = {
    "type": "object",
    "required": ["id", "alive", "host", "pid", "age", "queues", "functions", "imported",
                 "concurrency", "gpus"],
    "properties": {
        "id": {"type": "string", "description": "host:pid:tag, unique per worker."},
        "alive": {"type": "boolean", "description": "False once its heartbeat expired; a "
                  "dead worker is listed until the reaper took its jobs back."},
        "host": {"type": "string"},
        "pid": {"type": ["integer", "string"], "description": "\"?\" when not known."},
        "supervisor": {"type": "integer", "description": "The supervisor's pid (supervised "
                       "`controller consumer` children only)."},
        "kind": {"enum": ["thread", "process"], "description": "An in-process consumer's "
                 "thread, or a supervised child process."},
        "queues": _strings("The queues it takes from, in order of preference ([] for a "
                           "dead worker or one too old to say)."),
        "functions": _strings("Every listener it can run, sorted: its imported ones and "
                              "the registered ones it knows of."),
        "imported": _strings("The ones it came with (`consumer --import`, or listeners "
                             "that could not be shared through Redis): only workers that "
                             "report them run them."),
        "concurrency": {"type": ["integer", "null"], "description": "Jobs its process or "
                        "supervisor runs at once; null for a dead worker."},
        "gpus": _strings("The GPU ids it sees ([] when none were given to it)."),
        "job": {"type": ["string", "null"], "description": "The job it runs, or null when idle."},
        "started": _NUMBER_OR_NULL,
        "beat": {**_NUMBER_OR_NULL, "description": "Epoch seconds of its last heartbeat."},
        "age": {**_NUMBER_OR_NULL, "description": "Seconds since its last heartbeat; null "
                "for a dead worker."},
        "batch_fitted": {"type": ["integer", "null"], "description": "The largest batch "
                         "that fitted in memory, once a bigger one did not."},
    },
}

OPENAPI_PATHS = {
    "/workers": {"get": _op("Workers: what each one serves, and its last heartbeat", {
        "200": _json("Every known worker, sorted by id.", {
            "type": "object", "required": ["workers"],
            "properties": {"workers": {"type": "array", "items": _WORKER}}})})},
}
