"""Recently served large results, kept in the server's memory, and big results
read from Redis a chunk at a time.

A browser seeking through an audio result, or a page showing the same image to
many users, asks for the same megabytes again and again. A result never
changes once its attempt has finished, so (job id, attempt, finish time) names
it; each request still reads the job's status from Redis, and only the large
value itself comes from here. A big result (kept in a key of its own) is cached
chunk by chunk, so the cache stays within its capacity whatever the result's size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable

import redis

from mlq import defaults
from mlq.errors import JobNotFound

#: Results smaller than this are read from Redis every time: cheap to fetch,
#: and not worth an entry.
MIN_CACHED_BYTES = 64 * 1024

#: Memory the cache may hold, in bytes of results.
DEFAULT_CAPACITY = defaults.RESULT_CACHE


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


class ChunkedResult:
    """The body of a response sending a result kept in its own key: each chunk is
    read with GETRANGE (or found in the cache) just before it is sent, so a
    download holds about one chunk of memory whatever the result's size.

    Seekable, so that werkzeug answers a Range request by reading only the
    chunks the range covers.
    """

    def __init__(self, client: redis.Redis, key: str, size: int, cache: ResultCache,
                 name: Hashable, chunk: int = defaults.RESULT_CHUNK) -> None:
        self.client = client
        self.key = key
        self.size = size
        self.cache = cache
        self.name = name  # the result's cache name; each chunk adds its index
        self.chunk = chunk
        self.position = 0

    def __iter__(self) -> ChunkedResult:
        return self

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int) -> None:
        self.position = offset

    def tell(self) -> int:
        return self.position

    def __next__(self) -> bytes:
        if self.position >= self.size:
            raise StopIteration
        index, offset = divmod(self.position, self.chunk)
        data = self._read(index)
        piece = data[offset:] if offset else data
        self.position += len(piece)
        return piece

    def _read(self, index: int) -> bytes:
        name = (self.name, index)
        data = self.cache.get(name)
        if data is not None:
            return bytes(data)
        start = index * self.chunk
        end = min(start + self.chunk, self.size)
        data = self.client.getrange(self.key, start, end - 1)
        if len(data) != end - start:
            # expired or deleted while it was being sent (the route checked it was
            # there first): the response is cut short of its Content-Length, never
            # padded or filled with another result's bytes
            raise JobNotFound(f"result {self.key} is gone")
        self.cache.put(name, data, len(data))
        return data
