"""The HTTP server's memory of large results: bounded by size, least recent out."""

from __future__ import annotations

import pytest

from controller.result_cache import MIN_CACHED_BYTES, ChunkedResult, ResultCache
from mlq import MLQ, JobNotFound


def test_keeps_large_results_within_its_capacity_least_recent_out() -> None:
    size = MIN_CACHED_BYTES
    cache = ResultCache(capacity=3 * size)
    for n in range(3):
        cache.put(n, bytes([n]) * size, size)
    assert cache.get(0) == bytes([0]) * size  # 0 is now the most recently used
    cache.put(3, b"3" * size, size)
    assert cache.get(1) is None
    assert [cache.get(n) is not None for n in (0, 2, 3)] == [True, True, True]


def test_small_and_oversized_results_are_not_kept() -> None:
    cache = ResultCache(capacity=4 * MIN_CACHED_BYTES)
    cache.put("small", b"x", 1)
    cache.put("huge", b"x", 5 * MIN_CACHED_BYTES)
    assert cache.get("small") is None and cache.get("huge") is None


def test_a_chunked_result_is_read_a_chunk_at_a_time_within_the_cache(q: MLQ) -> None:
    chunk = MIN_CACHED_BYTES
    value = bytes(range(256)) * (5 * chunk // 256) + b"tail"
    q.client.set(q.keys.result("1"), value)
    cache = ResultCache(capacity=2 * chunk)
    body = ChunkedResult(q.client, q.keys.result("1"), len(value), cache, "r", chunk=chunk)
    pieces = list(body)
    assert b"".join(pieces) == value and max(len(p) for p in pieces) == chunk
    assert cache.get(("r", 4)) is not None and cache.get(("r", 2)) is None  # least recent out
    body.seek(2 * chunk + 7)  # what werkzeug does for a Range request
    assert next(body) == value[2 * chunk + 7:3 * chunk] and body.tell() == 3 * chunk
    q.client.delete(q.keys.result("1"))
    body.seek(0)
    with pytest.raises(JobNotFound):  # gone: the response is cut short, never padded
        next(body)
