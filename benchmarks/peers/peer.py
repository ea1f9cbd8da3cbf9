"""The contract each `<system>_bench.Bench` fulfils for drive.py (stdlib only)."""

from __future__ import annotations

import os
import sys
import time
from importlib import metadata
from typing import Callable


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of `dists` in this environment (absent ones are left out)."""
    found = {"python": sys.version.split()[0]}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def venv_script(name: str) -> str:
    """A console script of the running environment (rq, celery, arq...)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def timed(n: int, one: Callable[[], None]) -> list[float]:
    """Run `one` n times in sequence; the seconds each took."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        one()
        samples.append(time.perf_counter() - started)
    return samples


class Peer:
    """One system under test, seen from the producer's side."""

    #: The documented bulk-enqueue call, or None when the system has none.
    bulk_api: str | None = None

    def enqueue(self, n: int) -> None:
        """n no-op jobs, one enqueue call each."""
        raise NotImplementedError

    def bulk(self, n: int) -> None:
        """n no-op jobs through the bulk API."""
        raise NotImplementedError

    def fill(self, n: int) -> None:
        """Queue n jobs before a drain, the quickest way available (not timed)."""
        if self.bulk_api:
            self.bulk(n)
        else:
            self.enqueue(n)

    def worker_commands(self, workers: int) -> list[list[str]]:
        """Commands that start `workers` worker processes (run in this venv, cwd peers/)."""
        raise NotImplementedError

    def round_trips(self, n: int, timeout: float) -> list[float]:
        """n sequential enqueue -> result-seen round trips, each waited for the system's
        own way; the seconds each took."""
        raise NotImplementedError

    def close(self) -> None:
        pass
