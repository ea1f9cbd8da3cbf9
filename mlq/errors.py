"""The one exception hierarchy of MLQ.

The HTTP layer maps these to 4xx JSON answers and the CLI to a message and an
exit code, so every expected failure has a type of its own here.
"""

from __future__ import annotations

import redis


class MLQError(Exception):
    """Base of every MLQ error."""


class InvalidMessage(MLQError, ValueError):
    """A message (or option) that cannot be stored; raised before any id is taken."""


class InvalidName(InvalidMessage):
    """A namespace, queue, owner or function name outside the naming rule (keys.check_name)."""


class JobNotFound(MLQError, KeyError):
    """No job with this id in the namespace (or not in the place asked for)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "job not found"


class JobFailed(MLQError):
    """The awaited job ended failed; `record` holds its record, `error` its traceback."""

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = record or {}
        self.error = self.record.get("error")


class ListenerError(MLQError, ValueError):
    """A function that cannot be registered or loaded as a listener."""


class SignatureError(MLQError):
    """Stored code that is unsigned or signed with another secret."""


class ConnectionFailed(MLQError, ConnectionError):
    """Redis cannot be reached."""


#: What a lost or silent Redis raises: callers wait and retry, or answer 503.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionFailed)


class NotReplicated(MLQError):
    """Posted, but not confirmed on as many replicas as asked for (`replicas=`) in
    time: a failover now could lose the jobs. `job_ids` name them; post again to
    be sure (a job that did survive then runs twice)."""

    def __init__(self, job_ids: list[str], reached: int, wanted: int, timeout: float) -> None:
        ids = ", ".join(job_ids[:3]) + (" ..." if len(job_ids) > 3 else "")
        super().__init__(f"job {ids} reached {reached} of {wanted} replicas within {timeout} s")
        self.job_ids = job_ids
        self.reached = reached
        self.wanted = wanted
