"""The one private Redis-compatible server every system shares in a run."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis
from mlq.embedded import EmbeddedServer


@contextmanager
def private_redis(data_dir: Path) -> Iterator[EmbeddedServer]:
    """mlq.embedded's server on a free loopback port, stopped on the way out.

    AOF is switched off once it is up: every system meets the same server, the
    comparison stays fair, and no AOF rewrite (a fork) lands inside a timing.
    """
    server = EmbeddedServer(data_dir=data_dir).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("appendonly", "no")
        client.close()
        yield server
    finally:
        server.stop()


def describe(url: str) -> dict[str, str]:
    """Server name and versions, for the report."""
    client = redis.Redis.from_url(url, decode_responses=True)
    info = client.info("server")
    client.close()
    name = info.get("server_name", "redis")
    version = info.get("valkey_version") or info.get("redis_version", "?")
    return {"server": f"{name} {version}", "redis_version": str(info.get("redis_version", "?")),
            "appendonly": "no (switched off for the run)"}
