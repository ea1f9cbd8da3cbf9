"""What a job's log lines say, and the fields a structured (JSON) line carries.

Every job event logs `job_id`, `queue`, `function`, `error_kind`, `attempt` and
`duration` as fields of their own (controller/logs.py turns each into a JSON key),
so "every failure of `train` on queue `gpu`" is a query, not a regular expression.
The level says what needs a person: a failure is an ERROR with its traceback; a
retry, or a job taken back from a dead or killed worker, is a WARNING.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

from .job import FAILED
from .lifecycle import RETRY
from .serialization import unpack

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.worker")

#: The record fields a job's log line is made from.
SOURCE_FIELDS = ("queue", "functions", "call_name", "attempt", "error_kind", "processing_started")


def function_name(functions: Sequence[str] | None, call_name: str | None = None) -> str | None:
    """What a job runs, in one name: a submitted call's function, the listeners it
    names (comma-separated), or None for every registered listener."""
    if call_name:
        return call_name
    return ",".join(functions) if functions else None


def job_fields(record: dict[str, Any], event: str, duration: float | None = None,
               worker_id: str | None = None, error_kind: str | None = None) -> dict[str, Any]:
    """The `extra=` of a log line about `record` (at least its "id")."""
    return {"job_id": record["id"], "worker_id": worker_id, "queue": record.get("queue"),
            "function": function_name(record.get("functions"), record.get("call_name")),
            "attempt": record.get("attempt"), "event": event,
            "error_kind": error_kind if error_kind is not None else record.get("error_kind"),
            "duration": None if duration is None else round(duration, 6)}


def stored_fields(mlq: MLQ, job_id: str, event: str, worker_id: str | None = None,
                  now: float | None = None) -> dict[str, Any]:
    """job_fields of a job read from Redis: for the rare lines logged away from
    the worker (a recovery, a kill), which has no record at hand; the duration
    is of its last attempt until `now`. Never raises."""
    try:
        values = mlq.client.hmget(mlq.keys.job(job_id), list(SOURCE_FIELDS))
        record = {name: unpack(value) for name, value in zip(SOURCE_FIELDS, values)}
    except Exception:  # a log line must not stop a recovery
        record = {}
    started = record.get("processing_started")
    duration = now - started if now is not None and isinstance(started, (int, float)) else None
    return job_fields({**record, "id": job_id}, event, duration, worker_id)


def exception_line(error: str | None) -> str:
    """"ValueError: boom" out of a traceback (the line after its last frame); the
    first line of a reason that is not one."""
    lines = [line for line in (error or "").rstrip().splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.startswith(" ")]
    rest = lines[frames[-1] + 1:] if frames and lines[0].startswith("Traceback") else lines
    return rest[0] if rest else "(no reason given)"


def _unpacked(fields: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    # only the named fields: a completed attempt's result may be large
    pairs = dict(zip(fields[::2], fields[1::2]))
    return {name: unpack(pairs.get(name)) for name in names}


def log_outcome(record: dict[str, Any], outcome: str, fields: Sequence[Any], runtime: float,
                finished: float, worker_id: str) -> None:
    """Log an attempt's recorded outcome; `fields`: the packed fields it wrote,
    `finished`: when it ended, on the clock its retry was scheduled by."""
    job_id = record["id"]
    if outcome not in (FAILED, RETRY):
        if log.isEnabledFor(logging.INFO):
            log.info("job %s %s on %s in %.3f s", job_id, outcome, worker_id, runtime,
                     extra=job_fields(record, outcome, runtime, worker_id))
        return
    if outcome == RETRY:
        got = _unpacked(fields, ("last_error", "next_attempt_at"))
        error = exception_line(got["last_error"])
        delay = max((got["next_attempt_at"] or finished) - finished, 0.0)
        log.warning("job %s attempt %s failed on %s in %.3f s: %s; retrying in %.3g s",
                    job_id, record.get("attempt"), worker_id, runtime, error, delay,
                    extra={**job_fields(record, RETRY, runtime, worker_id, "error"),
                           "error": error, "retry_in": round(delay, 6)})
        return
    got = _unpacked(fields, ("error", "error_kind"))
    error = exception_line(got["error"])
    log_with_traceback(logging.ERROR, got["error"], "job %s failed on %s in %.3f s: %s",
                       job_id, worker_id, runtime, error,
                       extra={**job_fields(record, FAILED, runtime, worker_id,
                                           got["error_kind"] or "error"), "error": error})


def log_with_traceback(level: int, traceback_text: str | None, msg: str, *args: Any,
                       extra: dict[str, Any]) -> None:
    """Log as log.exception does, with a traceback that is text, not a live exception:
    a text formatter prints it under the message, the JSON one as its "exc" key."""
    if not log.isEnabledFor(level):
        return
    fn, lno, func, _ = log.findCaller(stacklevel=2)
    entry = log.makeRecord(log.name, level, fn, lno, msg, args, None, func, extra)
    if traceback_text and traceback_text.startswith("Traceback"):
        entry.exc_text = traceback_text.rstrip("\n")
    log.handle(entry)
