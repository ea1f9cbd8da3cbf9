"""`controller jobs`, `workers` and `functions` through real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mlq.heartbeat import beat
from mlq.queue import MLQ

from .conftest import Result

pytestmark = pytest.mark.timeout(60)

Cli = Callable[..., Result]
HOST = "gpu-node-0042.cluster.example.com"
#: Ids that share all but their last characters, as a supervisor's children do.
LONG_IDS = [f"{HOST}:12345:s81b51795-c{n}" for n in (1, 2, 3)]


def shout(msg: Any, *args: Any) -> Any:
    return str(msg).upper()


def _ids(done: Result) -> list[str]:
    assert done.rc == 0, done.err
    return [record["id"] for record in json.loads(done.out)]


def _fits(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, text
    return lines


def test_jobs_lists_newest_first_with_each_filter(cli: Cli, queue: MLQ) -> None:
    plain = queue.post("plain")
    alices = queue.post("a", queue="gpu", owner="alice", functions=["resize", "tag"])
    bobs = queue.post("b", queue="gpu", owner="bob", functions=["tag"])
    gone = queue.post("c", owner="alice")
    queue.cancel(gone)
    assert _ids(cli("jobs", "--json")) == [gone, bobs, alices, plain]
    assert _ids(cli("jobs", "--json", "--limit", "2")) == [gone, bobs]
    assert _ids(cli("jobs", "--json", "--status", "cancelled")) == [gone]
    assert _ids(cli("jobs", "--json", "--queue", "gpu")) == [bobs, alices]
    assert _ids(cli("jobs", "--json", "--owner", "alice")) == [gone, alices]
    assert _ids(cli("jobs", "--json", "--function", "tag", "--queue", "gpu")) == [bobs, alices]
    # the owner filter looks at the newest --limit jobs only, as --help says
    assert _ids(cli("jobs", "--json", "--owner", "alice", "--limit", "1")) == [gone]
    table = cli("jobs", "--queue", "gpu")
    header, *rows = _fits(table.out)
    assert header.split()[:3] == ["ID", "STATUS", "QUEUE"]
    assert [row.split()[:4] for row in rows] == [[bobs, "queued", "gpu", "bob"],
                                                 [alices, "queued", "gpu", "alice"]]
    assert "resize,tag" in rows[1] and "newest 2 of 2 jobs" in table.err
    refused = cli("jobs", "--status", "sleeping")
    assert refused.rc == 2 and "sleeping" in refused.err


def test_workers_lists_heartbeats_with_short_unique_ids(cli: Cli, queue: MLQ) -> None:
    assert cli("workers").out == "" and cli("workers", "--json").out.strip() == "[]"
    beat(queue.client, queue.keys,
         {worker_id: {"host": HOST, "pid": 20000 + n, "supervisor": 12345, "kind": "process",
                      "queues": ["gpu", "default"], "gpus": [str(n)],
                      "job": "7" if n == 0 else None}
          for n, worker_id in enumerate(LONG_IDS)}, timeout=30)
    header, *rows = _fits(cli("workers").out)
    assert header.split() == ["WORKER", "HOST", "PID", "QUEUES", "GPUS", "JOB", "BEAT", "STATE"]
    shown = [row.split()[0] for row in rows]
    assert shown == ["…51795-c1", "…51795-c2", "…51795-c3"]
    assert rows[0].split()[3] == "gpu,default"  # what each serves
    assert rows[0].split()[5] == "7" and all(row.endswith("alive") for row in rows)
    found = json.loads(cli("workers", "--json").out)
    assert [w["id"] for w in found] == LONG_IDS  # whole ids in JSON
    assert found[0]["pid"] == 20000 and found[0]["alive"] is True


def test_functions_lists_registered_and_reported_listeners(cli: Cli, queue: MLQ) -> None:
    assert cli("functions", "--json").out.strip() == "[]"
    # registered, and run by no worker of this process: only the one beaten below
    queue.register_listener(shout)
    beat(queue.client, queue.keys, {LONG_IDS[0]: {"host": HOST, "pid": 1,
                                                  "functions": ["local_only", "shout"]}},
         timeout=30)
    entries = {e["name"]: e for e in json.loads(cli("functions", "--json").out)}
    assert set(entries) == {"shout", "local_only"}
    assert entries["shout"]["registered"] is True and entries["shout"]["size"] > 0
    assert entries["shout"]["workers"] == [LONG_IDS[0]]
    assert entries["local_only"]["registered"] is False
    header, *rows = _fits(cli("functions").out)
    assert header.split() == ["NAME", "REGISTERED", "SIZE", "SINCE", "WORKERS"]
    assert [row.split()[:2] for row in rows] == [["shout", "yes"], ["local_only", "no"]]
