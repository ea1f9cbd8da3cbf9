"""The HTTP server's memory of large results: bounded by size, least recent out."""

from __future__ import annotations

from controller.result_cache import MIN_CACHED_BYTES, ResultCache


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
