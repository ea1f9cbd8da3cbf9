"""What the dashboard and `controller top` show: counts per queue, rates, workers.

Only reads, through the library's public calls (`stats`, `list_jobs`,
`heartbeat.workers`); no Flask and no rich here, so the web page and the
terminal view show the same numbers computed the same way.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from mlq.queue import MLQ

#: The columns of the overview, in the order a job moves through them.
COLUMNS = ("waiting", "running", "completed", "failed", "dead")
#: The dashboard's columns: COLUMNS with the statuses of a job's wider life (waiting
#: for its time or its dependencies, ended unrun), in that same order. `top` keeps
#: COLUMNS, which fit a terminal.
ALL_COLUMNS = ("scheduled", "deferred", "waiting", "running", "completed", "failed",
               "cancelled", "expired", "dead")
#: Columns counted by the status index of the same name, per queue and in total.
_INDEXED = ("scheduled", "deferred", "running", "completed", "failed", "cancelled",
            "expired")
#: Seconds of history the jobs-per-second rate is averaged over: long enough to
#: smooth a bursty queue, short enough that a stall shows within a few refreshes.
RATE_WINDOW = 15.0
#: An overview this fresh is reused: several open tabs (or a tab and `top`)
#: then cost Redis one set of counts per interval, not one each.
CACHE_SECONDS = 1.0


@dataclass
class QueueCounts:
    """One row of the overview: a queue, or the whole namespace (name None)."""

    name: str | None
    waiting: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    scheduled: int = 0
    deferred: int = 0
    cancelled: int = 0
    expired: int = 0
    rate: float | None = None  # finished jobs per second; None until two samples exist
    paused: bool = False  # workers take nothing from it (MLQ.pause)
    unserved: bool = False  # jobs wait in it and no live worker takes from it


@dataclass
class Overview:
    """Everything one overview frame shows."""

    namespace: str
    taken_at: float
    total: QueueCounts
    queues: list[QueueCounts]
    workers_alive: int
    workers_dead: int
    posted: int
    extra: dict[str, Any] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RateMeter:
    """Per-key rates from cumulative numbers sampled over time (finished jobs → jobs/s)."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, float]]] = deque()
        self._lock = threading.Lock()

    def add(self, now: float, values: dict[str, float]) -> None:
        """Record the cumulative `values` seen at time `now`."""
        with self._lock:
            if self._samples:
                # a key first seen now (a new queue) was created since the last
                # sample, when it had finished nothing: its jobs count as this window's
                for _, old in self._samples:
                    for key in values.keys() - old.keys():
                        old[key] = 0.0
            self._samples.append((now, dict(values)))
            # keep one sample older than the window, so the rate spans all of it
            while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
                self._samples.popleft()

    def rate(self, key: str) -> float | None:
        """Increase of `key` per second over the window; None without two samples."""
        with self._lock:
            points = [(t, v[key]) for t, v in self._samples if key in v]
        if len(points) < 2 or points[-1][0] - points[0][0] < 0.2:
            return None
        (t0, v0), (t1, v1) = points[0], points[-1]
        # purged or expired records make a count go down: that is not a negative rate
        return max(v1 - v0, 0.0) / (t1 - t0)


class OverviewSource:
    """Builds overviews of one namespace, with the rate history they need between calls."""

    def __init__(self, mlq: MLQ, *, cache_seconds: float = CACHE_SECONDS,
                 window: float = RATE_WINDOW) -> None:
        self.mlq = mlq
        self.meter = RateMeter(window)
        self.cache_seconds = cache_seconds
        self._last: Overview | None = None
        self._lock = threading.Lock()

    def get(self, now: float | None = None) -> Overview:
        """The overview now, or one at most `cache_seconds` old."""
        now = time.time() if now is None else now
        with self._lock:
            last = self._last
            if last is not None and 0 <= now - last.taken_at < self.cache_seconds:
                return last
            self._last = self._collect(now)
            return self._last

    def invalidate(self) -> None:
        """Forget the cached overview: the next get() counts again (after a pause)."""
        with self._lock:
            self._last = None

    def _collect(self, now: float) -> Overview:
        mlq = self.mlq
        stats = mlq.stats()
        paused = mlq.paused()
        # a paused queue nobody posted to yet is still listed, so it can be resumed
        names = sorted(set(mlq.queue_names()) | set(stats["waiting_by_queue"]) | set(paused))
        dead = mlq.dead_by_queue()
        rows = [_queue_row(mlq, name, stats, dead.get(name, 0), name in paused)
                for name in names]
        total = _queue_row(mlq, None, stats, int(stats["dead"]), False)
        # the namespace's rate comes from its counters, which purges do not lower
        samples = {"": float(stats["completed"] + stats["failed"])}
        samples.update({row.name: float(row.completed + row.failed)
                        for row in rows if row.name is not None})
        self.meter.add(now, samples)
        total.rate = self.meter.rate("")
        for row in rows:
            row.rate = self.meter.rate(row.name or "")
        found = mlq.workers()
        alive = [w for w in found if w.get("alive")]
        served = served_queues(alive)
        for row in rows:
            row.unserved = bool(row.waiting) and served is not None and row.name not in served
        return Overview(mlq.namespace, now, total, rows, len(alive), len(found) - len(alive),
                        int(stats["posted"]), paused=paused)


def _queue_row(mlq: MLQ, name: str | None, stats: dict[str, Any], dead: int,
               paused: bool) -> QueueCounts:
    """The counts of one queue, or of all of them (name None)."""
    waiting = stats["waiting_by_queue"].get(name, 0) if name is not None else stats["waiting"]
    row = QueueCounts(name, waiting=int(waiting), dead=dead, paused=paused)
    for column in _INDEXED:
        # the total of a status index, one page of one record: counted in Redis,
        # never by loading the jobs
        status = "started" if column == "running" else column
        setattr(row, column, mlq.list_jobs(status, name, limit=1)[0])
    return row


def served_queues(alive: list[dict[str, Any]]) -> set[str] | None:
    """The queues live workers take from; None when one of them does not say (a
    worker older than the `queues` heartbeat key), so no queue is flagged wrongly."""
    served: set[str] = set()
    for worker in alive:
        if not isinstance(worker.get("queues"), list):
            return None
        served.update(str(name) for name in worker["queues"])
    return served


def unserved_text(row: QueueCounts) -> str:
    """The warning `top` prints and the dashboard's badge explains."""
    return f"queue {row.name}: {row.waiting} waiting, no live worker serves it"


# -- workers --------------------------------------------------------------------------
@dataclass
class WorkerGroup:
    """Workers that share a process (threads) or a supervisor (child processes)."""

    host: str
    pid: int | str
    kind: str
    workers: list[dict[str, Any]]

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w["alive"])


def worker_groups(mlq: MLQ, now: float | None = None) -> list[WorkerGroup]:
    """Every known worker with its heartbeat age, grouped by the process that runs it."""
    now = time.time() if now is None else now
    groups: dict[tuple[str, str], WorkerGroup] = {}
    for info in mlq.workers():
        worker = describe_worker(info, now)
        parent = worker.get("supervisor") or worker["pid"]
        key = (str(worker["host"]), str(parent))
        if key not in groups:
            kind = "supervisor" if worker.get("supervisor") else str(worker.get("kind") or "?")
            groups[key] = WorkerGroup(str(worker["host"]), parent, kind, [])
        groups[key].workers.append(worker)
    return sorted(groups.values(), key=lambda g: (g.host, str(g.pid)))


def describe_worker(info: dict[str, Any], now: float) -> dict[str, Any]:
    """A heartbeat entry with `age` (seconds since its last beat) and host/pid filled in.

    A dead worker's heartbeat has expired, so all we still know is its id, which
    reads ``host:pid:...`` (heartbeat.new_worker_id): that gives host and pid.
    """
    worker = dict(info)
    host, _, rest = str(info["id"]).partition(":")
    pid_text = rest.partition(":")[0]
    worker.setdefault("host", host or "?")
    worker.setdefault("pid", int(pid_text) if pid_text.isdigit() else "?")
    beat = info.get("beat")
    worker["age"] = max(now - beat, 0.0) if isinstance(beat, (int, float)) else None
    # what the heartbeat says the worker serves (heartbeat.capacity); empty when
    # an older worker did not say
    for key in ("gpus", "queues", "functions", "imported"):
        worker[key] = [str(item) for item in info.get(key) or []]
    worker.setdefault("concurrency", None)
    return worker


def function_rows(registered: list[dict[str, Any]],
                  workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every function a worker can run, with the live workers that report it: the
    registered ones (every worker runs them) in registration order, then the ones
    only some workers came with (`consumer --import`), by name."""
    rows = {f["name"]: {**f, "in_registry": True, "workers": []} for f in registered}
    for worker in (w for w in workers if w.get("alive")):
        for name in worker.get("functions") or []:
            row = rows.setdefault(name, {"name": name, "size": None, "registered": None,
                                         "in_registry": False, "workers": []})
            row["workers"].append(str(worker["id"]))
    return [rows[name] for name in rows if rows[name]["in_registry"]] + sorted(
        (row for row in rows.values() if not row["in_registry"]), key=lambda r: r["name"])


# -- formatting shared by the page and the terminal -----------------------------------
def ago(seconds: float | None) -> str:
    """`3.2 s`, `5 min`, `2 h`, `4 d`: an age as people read it."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def human_size(size: int | None) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def when(epoch: float | None) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``."""
    if not isinstance(epoch, (int, float)):
        return "—"
    try:
        return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # beyond what the platform's clock reads
        return "—"


def rate_text(rate: float | None) -> str:
    """Jobs per second with sensible precision."""
    if rate is None:
        return "—"
    return f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"


#: The history chart's drawing area, in SVG units (it scales to the page's width).
CHART_WIDTH, CHART_HEIGHT = 600, 100


def history_chart(history: list[dict[str, int]]) -> dict[str, Any]:
    """Bars of the jobs completed (below) and failed (stacked above) per minute, for
    an SVG drawn by the template: no script and no chart library."""
    peak = max([m["completed"] + m["failed"] for m in history] + [1])
    step = CHART_WIDTH / max(len(history), 1)
    bars = []
    for n, minute in enumerate(history):
        done = minute["completed"] * CHART_HEIGHT / peak
        failed = minute["failed"] * CHART_HEIGHT / peak
        label = time.strftime("%H:%M UTC", time.gmtime(minute["minute"] * 60))
        bars.append({"x": round(n * step, 2), "width": round(step * 0.8, 2),
                     "done": round(done, 2), "failed": round(failed, 2), "label": label,
                     "completed_count": minute["completed"], "failed_count": minute["failed"]})
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT,
            "completed": sum(m["completed"] for m in history),
            "failed": sum(m["failed"] for m in history)}
