"""Recently served large results, kept in the server's memory.

A browser seeking through an audio result, or a page showing the same image to
many users, asks for the same tens of megabytes again and again. A result never
changes once its attempt has finished, so (job id, attempt, finish time) names
it; each request still reads the job's status from Redis, and only the large
value itself comes from here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable

#: Results smaller than this are read from Redis every time: cheap to fetch,
#: and not worth an entry.
MIN_CACHED_BYTES = 64 * 1024

#: Memory the cache may hold, in bytes of results.
DEFAULT_CAPACITY = 256 * 1024 ** 2


class ResultCache:
    """Least-recently-used results, bounded by their total size."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if size < MIN_CACHED_BYTES or size > self.capacity:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped
