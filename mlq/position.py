"""Where a queued job stands in line, and about when it starts (docs/http.md).

`position` is the number of jobs workers take before this one: 0 when it runs
next, None when it is not queued. It is read in one step (position.lua) without
walking any list: every job that joins a lane at its back takes the lane's next
number (Keys.lane_joined, kept in the record as lane_seq), and the jobs behind
it are those numbered after it, less those taken out of the middle since
(Keys.lane_removed). Within a lane the count is exact. Across lanes: every job
in a higher priority lane of its queue is ahead; an owner's job has every plain
lane of its queue ahead, then the owners' turns (see position.lua), an estimate
that assumes one job per owner per turn and no per-owner limit. Workers that
serve several queues may take other queues' jobs first: only the job's own
queue counts.

`eta_s` is the seconds until it starts: (position + 1) runs of the mean run time
(of its queue's jobs of the same function, from the labelled metrics, where some
ran; else of every job), spread over the live workers that take from its queue (each heartbeat names its
worker's queues). None without a run recorded or such a worker.

The pieces are pure functions (`call`, `answer`), so that an asyncio client
sends the same step; `position_and_eta` and `read_job` are the blocking ones.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from .job import QUEUED, RUNTIME_BUCKETS, bucket_field
from .keys import DEFAULT_QUEUE, PRIORITIES, Keys
from .metrics import function_label, runtime_fields
from .record import read_record

if TYPE_CHECKING:
    from .queue import MLQ

#: The keys get_job adds to a record (asked for by name, or with the whole record).
POSITION_FIELDS = ("position", "eta_s")
#: The record's field with the job's number in its lane (not shown in records).
LANE_SEQ = "lane_seq"
#: Fields of the record the step's keys are built from.
PLACE_FIELDS = ("status", "queue", "priority", "owner", "functions", "call_name")
#: How far from the head of its lane to look for a job requeued there (it has no
#: number): past that its position is not known (None).
LOOK_FROM_HEAD = 10_000
_HISTOGRAM = [bucket_field(bound) for bound in RUNTIME_BUCKETS]


def call(keys: Keys, job_id: str, record: dict[str, Any]) -> tuple[list[str], list[Any]] | None:
    """position.lua's KEYS and ARGV for a job whose record (PLACE_FIELDS at least)
    was read; None when the record says it is not queued: then nothing is sent."""
    if record.get("status") != QUEUED:
        return None
    queue, priority, owner = record["queue"], record.get("priority") or 0, record.get("owner")
    owned = bool(owner) and not priority
    lanes = keys.lanes(queue)  # highest priority first
    ahead = lanes if owned else lanes[:len(PRIORITIES) - 1 - priority]
    key_list = [keys.job(job_id), keys.lane(queue, priority, owner),
                keys.lane_joined(queue, priority, owner), keys.lane_removed(queue, priority, owner),
                keys.workers, keys.stats, keys.metrics, keys.owners(queue), *ahead]
    own = runtime_fields(queue or DEFAULT_QUEUE, function_label(record))
    args = [job_id, owner if owned else "", keys.owned_prefix(queue), keys.heartbeat(""),
            len(_HISTOGRAM), LOOK_FROM_HEAD, queue or DEFAULT_QUEUE, *_HISTOGRAM, *own]
    return key_list, args


def answer(reply: Any) -> tuple[int | None, float | None]:
    """(position, eta_s) from position.lua's reply."""
    if not reply:
        return None, None
    position, live, runs, seconds, own_runs, own_seconds = reply
    return int(position), eta(int(position), int(live), int(runs), float(seconds),
                              int(own_runs), float(own_seconds))


def eta(position: int, live: int, runs: int, seconds: float, own_runs: int = 0,
        own_seconds: float = 0.0) -> float | None:
    """Seconds until a job with `position` jobs ahead starts: a worker frees up
    every mean-run-time / live-workers seconds, and it takes the (position + 1)th."""
    if live <= 0:
        return None
    if own_runs > 0:
        mean = own_seconds / own_runs
    elif runs > 0:
        mean = seconds / runs
    else:
        return None
    return round((position + 1) * mean / live, 1)


def position_and_eta(mlq: MLQ, job_id: str, record: dict[str, Any]
                     ) -> tuple[int | None, float | None]:
    """(position, eta_s) of a job whose record was read: one round trip when the
    record says it is queued, none otherwise."""
    parts = call(mlq.keys, job_id, record)
    if parts is None:
        return None, None
    return answer(mlq.scripts.position(*parts))


def read_job(mlq: MLQ, job_id: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
    """MLQ.get_job: the record (or `fields` of it), with `position` and `eta_s` when
    the whole record is read or either is asked for."""
    if fields is None:
        record = read_record(mlq.client, mlq.keys, job_id)
        record.pop(LANE_SEQ, None)
        record["position"], record["eta_s"] = position_and_eta(mlq, job_id, record)
        return record
    wanted = [f for f in fields if f not in POSITION_FIELDS]
    if len(wanted) == len(fields):
        return read_record(mlq.client, mlq.keys, job_id, fields)
    record = read_record(mlq.client, mlq.keys, job_id, [*wanted, *PLACE_FIELDS])
    position, eta_s = position_and_eta(mlq, job_id, record)
    for name in PLACE_FIELDS:
        if name not in wanted:
            del record[name]
    if "position" in fields:
        record["position"] = position
    if "eta_s" in fields:
        record["eta_s"] = eta_s
    return record


def in_line_text(position: int | None, eta_s: float | None) -> str | None:
    """What a progress display shows while a job waits: '#4 in line, ~40 s' (1-based:
    position 0, the job that runs next, is '#1 in line')."""
    if position is None:
        return None
    text = f"#{position + 1} in line"
    if eta_s is None:
        return text
    if eta_s < 120:
        return f"{text}, ~{eta_s:.0f} s"
    if eta_s < 7200:
        return f"{text}, ~{eta_s / 60:.0f} min"
    return f"{text}, ~{eta_s / 3600:.0f} h"


class InLine:
    """A waiting job's '#4 in line, ~40 s', read again at most once per `every`
    seconds, for displays that redraw more often (controller post --wait,
    Job.wait(progress=True))."""

    def __init__(self, mlq: MLQ, job_id: str, every: float = 1.0) -> None:
        self.mlq, self.job_id, self.every = mlq, job_id, every
        self._read_at = float("-inf")
        self._text: str | None = None

    def text(self, status: str | None) -> str | None:
        """The text while `status` (the display's latest) is queued, else None."""
        if status != QUEUED:
            self._read_at = float("-inf")  # queued again later: read at once
            return None
        now = time.monotonic()
        if now - self._read_at >= self.every:
            self._read_at = now
            record = self.mlq.get_job(self.job_id, fields=POSITION_FIELDS)
            self._text = in_line_text(record["position"], record["eta_s"])
        return self._text
