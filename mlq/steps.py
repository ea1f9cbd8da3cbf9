"""The keys and arguments of a producer's steps, apart from sending them (Steps)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import defaults
from .keys import Keys

#: Most sets of fixed call parts one Scripts keeps (see Scripts._fixed).
FIXED_PARTS_KEPT = 1024


@dataclass(frozen=True)
class Lifecycle:
    """What a post says about a job's life besides its record (see post.lua)."""

    due: float | None = None
    expires_at: float | None = None
    key: str | None = None
    depends_on: tuple[str, ...] = ()


def _optional(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class Steps:
    """The keys and arguments of the steps a producer sends, built without sending
    anything: Scripts sends them with redis-py, the asyncio client (aio.py) awaits
    the same scripts with the same arguments."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._fixed_parts: dict[tuple[Any, ...], Any] = {}

    def _fixed(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """What every call of one kind sends unchanged (keys, fixed arguments),
        built once; the cache stays small however many owners or workers come."""
        found = self._fixed_parts.get(key)
        if found is None:
            found = build()
            if len(self._fixed_parts) < FIXED_PARTS_KEPT:
                self._fixed_parts[key] = found
        return found

    def lane(self, queue: str, priority: int = 0, owner: str | None = None) -> str:
        """The list a job waits in: its queue's list at its priority, or, for a job of
        the default priority with an owner, its owner's list (a priority jumps the
        owners' round-robin)."""
        return self.keys.owned(queue, owner) if owner and not priority else self.keys.queue(queue, priority)

    def post_call(self, queue: str, fields: Sequence[Any], priority: int = 0,
                  owner: str | None = None, token: str | None = None,
                  lifecycle: Lifecycle | None = None, sent: str = "") -> tuple[list[Any], list[Any]]:
        """The post step's keys and arguments (see Scripts.post); `sent`: post.lua's
        ARGV[8], how a post sent again is told from a new one."""
        keys, args = self._fixed(("post", queue, priority, owner),
                                 lambda: self._post_parts(queue, priority, owner))
        life = lifecycle or Lifecycle()
        now = time.time()
        window = int(now // defaults.POST_TOKENS_WINDOW)
        keys = [*keys, self.keys.posted(token or os.urandom(9).hex()), self.keys.prefix,
                self.keys.paused, self.keys.post_tokens(window), self.keys.post_tokens(window - 1)]
        args = [*args, sent, repr(now), _optional(life.due), _optional(life.expires_at),
                life.key or "", len(life.depends_on), *life.depends_on, *fields]
        return keys, args

    def _post_parts(self, queue: str, priority: int, owner: str | None
                    ) -> tuple[list[str], list[str]]:
        """A post's keys and arguments but its token, time and record."""
        k = self.keys
        return ([k.counter, self.lane(queue, priority, owner), k.queues, k.wake(queue),
                 k.owners(queue), k.index_all, k.index_log, k.running, k.idle(queue)],
                [k.job_prefix, queue, "" if priority else owner or "", k.processing(""),
                 k.inbox(""), k.idle_flag(""), k.index_queue("")])

    def post_many_call(self, queue: str, records: Sequence[Sequence[Any]], priority: int = 0,
                       owner: str | None = None, lifecycle: Lifecycle | None = None
                       ) -> tuple[list[Any], list[Any]]:
        """The post_many step's keys and arguments (see Scripts.post_many)."""
        k = self.keys
        life = lifecycle or Lifecycle()
        args: list[Any] = [k.job_prefix, queue, "" if priority else owner or "",
                           _optional(life.due), _optional(life.expires_at), repr(time.time())]
        for fields in records:
            args += [len(fields) // 2, *fields]
        keys = [k.counter, self.lane(queue, priority, owner), k.queues, k.wake(queue),
                k.owners(queue), k.index_all, k.index_queue(queue), k.posted(os.urandom(9).hex()),
                k.prefix, k.paused, k.idle(queue)]
        return keys, args

    def tally_call(self) -> tuple[list[Any], list[Any]]:
        """The tally step's keys and arguments (see Scripts.tally)."""
        k = self.keys
        window = int(time.time() // defaults.POST_TOKENS_WINDOW)
        return ([k.tally, k.stats, k.metrics, k.metric_functions, k.index_status("completed"),
                 k.index_log, k.index_all, k.queues, k.post_tokens(window)],
                [k.history_prefix, int(defaults.HISTORY_KEEP), k.index_queue("")])

    def cancel_call(self, job_id: str, queue: str, now: float, priority: int = 0,
                    owner: str | None = None) -> tuple[list[Any], list[Any]]:
        """The cancel step's keys and arguments (see Scripts.cancel)."""
        k = self.keys
        return ([k.job(job_id), self.lane(queue, priority, owner), k.prefix],
                [job_id, repr(now), k.control_channel("")])
