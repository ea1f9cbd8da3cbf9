"""Worker heartbeats: a key with a TTL per worker id, so death is noticed by expiry."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Iterable

import redis

from .keys import Keys
from .serialization import pack, unpack


def new_worker_id(tag: str = "") -> str:
    """host:pid:random — unique, and readable in a dashboard."""
    suffix = os.urandom(4).hex()
    return f"{socket.gethostname()}:{os.getpid()}:{tag}{suffix}"


def beat(client: redis.Redis, keys: Keys, workers: dict[str, dict[str, Any]],
         timeout: float) -> None:
    """Refresh the heartbeat of every worker id in `workers` (id -> info shown to users)."""
    pipe = client.pipeline(transaction=False)
    ttl_ms = max(int(timeout * 1000), 1)
    now = time.time()
    for worker_id, info in workers.items():
        pipe.sadd(keys.workers, worker_id)
        pipe.set(keys.heartbeat(worker_id), pack({**info, "beat": now}), px=ttl_ms)
    pipe.execute()


def retire(client: redis.Redis, keys: Keys, worker_ids: Iterable[str]) -> None:
    """A clean stop: drop the heartbeats; ids that hold nothing leave the worker set."""
    ids = list(worker_ids)
    if not ids:
        return
    client.delete(*[keys.heartbeat(w) for w in ids])
    for worker_id in ids:
        if client.llen(keys.processing(worker_id)) == 0:
            client.srem(keys.workers, worker_id)


def workers(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every known worker with its last heartbeat info; `alive` False once it expired."""
    ids = sorted(w.decode() for w in client.smembers(keys.workers))
    pipe = client.pipeline(transaction=False)
    for worker_id in ids:
        pipe.get(keys.heartbeat(worker_id))
    answers = pipe.execute() if ids else []
    return [
        {"id": worker_id, "alive": raw is not None, **(unpack(raw) if raw else {})}
        for worker_id, raw in zip(ids, answers)
    ]
