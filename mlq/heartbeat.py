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


def capacity(queues: Iterable[str], imported: Iterable[str], registered: Iterable[str],
             concurrency: int, gpus: Iterable[str] = ()) -> dict[str, Any]:
    """What a heartbeat says a worker serves, for operators (dashboard, top, GET
    /workers) and for /metrics' live workers per queue.

    `queues`: the queues it takes from, in order of preference. `functions`: every
    listener name it can run, sorted: those it came with plus the registered ones
    it knows of. `imported`: those it came with (`consumer --import`, or
    create_listener's unshareable ones), which only workers that report them run.
    `concurrency`: how many jobs its process (or supervisor) runs at once.
    `gpus`: the GPU ids it sees ([] when none were given to it).
    """
    imported = sorted(set(imported))
    return {"queues": list(queues), "functions": sorted(set(imported) | set(registered)),
            "imported": imported, "concurrency": int(concurrency),
            "gpus": [str(gpu) for gpu in gpus]}


def beat(client: redis.Redis, keys: Keys, workers: dict[str, dict[str, Any]],
         timeout: float, *, read_registered: bool = False) -> list[str]:
    """Refresh the heartbeat of every worker id in `workers` (id -> info shown to users).

    `read_registered`: also read the names of the registered listeners, in the same
    round trip, for a process that beats for workers without loading their code
    (the supervisor); its next beat reports them. Returns them ([] if not read).
    """
    pipe = client.pipeline(transaction=False)
    ttl_ms = max(int(timeout * 1000), 1)
    now = time.time()
    for worker_id, info in workers.items():
        pipe.sadd(keys.workers, worker_id)
        pipe.set(keys.heartbeat(worker_id), pack({**info, "beat": now}), px=ttl_ms)
    if read_registered:
        pipe.zrange(keys.registry_order, 0, -1)
    answers = pipe.execute()
    return [name.decode() for name in answers[-1]] if read_registered else []


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
