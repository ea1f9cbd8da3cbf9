"""Pure rules about a job: no I/O here, so each is tested on its own."""

from __future__ import annotations

from typing import Any

from .serialization import to_json_text

QUEUED, STARTED, COMPLETED, FAILED = "queued", "started", "completed", "failed"
#: waiting for its time (post(delay=...), a retry's backoff) / for its dependencies
SCHEDULED, DEFERRED = "scheduled", "deferred"
#: ended without finishing: cancelled by a user / not started by its deadline
CANCELLED, EXPIRED = "cancelled", "expired"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, EXPIRED})
STATUSES = (QUEUED, SCHEDULED, DEFERRED, STARTED, COMPLETED, FAILED, CANCELLED, EXPIRED)

#: Upper bounds (seconds) of the run-time histogram buckets kept in Redis.
RUNTIME_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, float("inf"),
)


def progress_text(progress: Any, status: str | None = None) -> str:
    """What get_progress answers for a progress value (SPEC §2); a job waiting
    for its time, its dependencies, or ended unstarted says so."""
    if status in (SCHEDULED, DEFERRED, CANCELLED, EXPIRED):
        return f"[{status}]"
    if progress is None:
        return "[queued; not started]"
    if progress == 0 and progress is not False:
        return "[started]"
    if progress == 100 and progress is not True:
        return "[completed]"
    if progress == -1:
        return "[failed]"
    return str(progress)


def short_text(value: Any) -> str | None:
    """short_result for a listener's plain return value (SPEC §3)."""
    if value is None or isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    return to_json_text(value)


def split_outcome(value: Any) -> tuple[Any, str | None]:
    """(result, short_result) for what the last listener returned (SPEC §3)."""
    if isinstance(value, tuple) and len(value) == 2:
        short, long = value
        return long, (None if short is None else str(short))
    return value, short_text(value)


def runtime_bucket(seconds: float) -> str:
    """The stats field counting runs of this length (non-cumulative buckets)."""
    for bound in RUNTIME_BUCKETS:
        if seconds <= bound:
            return bucket_field(bound)
    return bucket_field(float("inf"))


#: The run-time histogram's fields in the stats hash: this prefix and a bound's label.
RUNTIME_FIELD_PREFIX = "runtime_le_"


def bound_label(bound: float) -> str:
    """A histogram bound as Redis fields spell it ('0.005', 'inf'); float() reads it back."""
    return "inf" if bound == float("inf") else repr(bound)


def bucket_field(bound: float) -> str:
    return RUNTIME_FIELD_PREFIX + bound_label(bound)


def time_limit_reason(timeout: float) -> str:
    return f"time limit {timeout:g} s exceeded"


def signal_reason(returncode: int) -> str:
    """Why a child process ended, from its exit status."""
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"worker exited with code {returncode}"



def error_kind(exc: BaseException) -> str:
    """'oom' for out-of-memory failures (MemoryError, CUDA out of memory), else 'error'."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "oom"
    return "error"
