"""Big results and the HTTP server's memory: five 50 MiB results downloaded at
once, one of them as a Range request, by a real `controller server` process.

The server's resident memory is read from /proc before and during the downloads;
a server that holds whole results (one copy per download, more in a cache) grows
by hundreds of MiB here.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from mlq import MLQ
from mlq.embedded import EmbeddedServer, free_port
from mlq.worker import Worker
from tests.faults.conftest import Commands, base_env, wait_for_port

MIB = 1024 ** 2
SIZE = 50 * MIB
COUNT = 5
#: Growth of the server's resident memory above idle that the downloads may cause.
LIMIT = 200 * MIB
#: The Range request: both ends fall inside chunks, not on their edges.
FIRST, LAST = 12_345_678, 40_000_000


def big_result(msg: dict[str, Any], *args: Any) -> bytes:
    return random.Random(msg["seed"]).randbytes(msg["size"])


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (its peak) of `pid`, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def _reset_peak(pid: int) -> None:
    # from here on VmHWM is the peak of the downloads alone, not of start-up
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # then the sampled VmRSS is the only peak


class Sampler:
    """VmRSS of a process sampled every 10 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, _memory(self.pid)["VmRSS"])

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return max(self.peak, _memory(self.pid)["VmHWM"])


def _download(url: str, headers: dict[str, str], out: dict[str, Any],
              start: threading.Barrier) -> None:
    start.wait()
    digest = hashlib.sha256()
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        out["status"] = response.status_code
        out["range"] = response.headers.get("Content-Range")
        for chunk in response.iter_content(MIB):
            digest.update(chunk)
    out["sha256"] = digest.hexdigest()


def _download_all(base: str, ids: list[str]) -> list[dict[str, Any]]:
    outs: list[dict[str, Any]] = [{} for _ in ids]
    start = threading.Barrier(len(ids))
    threads = []
    for n, job_id in enumerate(ids):
        headers = {"Range": f"bytes={FIRST}-{LAST}"} if n == len(ids) - 1 else {}
        threads.append(threading.Thread(target=_download, daemon=True,
                                        args=(f"{base}/jobs/{job_id}/result", headers, outs[n], start)))
        threads[-1].start()
    for thread in threads:
        thread.join(120)
    return outs


def _expected(seed: int, ranged: bool) -> str:
    data = big_result({"seed": seed, "size": SIZE})
    return hashlib.sha256(data[FIRST:LAST + 1] if ranged else data).hexdigest()


@pytest.mark.timeout(120)
def test_concurrent_big_downloads_keep_the_server_small(own_redis: EmbeddedServer,
                                                        commands: Commands) -> None:
    url, namespace = own_redis.url, "big"
    q = MLQ(namespace, redis_url=url)
    worker = Worker(q, "big-worker", local_listeners={"big_result": big_result})
    ids = [q.post({"seed": n, "size": SIZE}, functions=["big_result"]) for n in range(COUNT)]
    small = q.post({"seed": 0, "size": 1000}, functions=["big_result"])
    for _ in range(COUNT + 1):
        assert worker.step()
    assert {q.get_job(i, fields=("status",))["status"] for i in ids} == {"completed"}

    port = free_port()
    # the cache at its default size, whatever this shell sets
    env = {k: v for k, v in base_env().items() if k != "MLQ_RESULT_CACHE"}
    server = commands.start("server", "server", "--redis_url", url, "--namespace", namespace,
                            "--server_port", str(port), env=env)
    wait_for_port(port, server)
    base = f"http://127.0.0.1:{port}"
    # the result route's first answer imports and allocates what later ones reuse
    assert requests.get(f"{base}/jobs/{small}/result", timeout=10).status_code == 200
    time.sleep(0.5)  # a settling time, not a wait: memory is measured once the server is idle
    idle = _memory(server.pid)["VmRSS"]
    _reset_peak(server.pid)
    sampler = Sampler(server.pid)
    outs = _download_all(base, ids)
    peak = sampler.close()
    time.sleep(0.5)  # a settling time, not a wait: what is kept after the downloads
    after = _memory(server.pid)["VmRSS"]

    print(f"\nbig results: {COUNT} x {SIZE // MIB} MiB downloaded at once (one as a Range "
          f"request) from a server idle at {idle / MIB:.0f} MiB: peak "
          f"+{(peak - idle) / MIB:.0f} MiB, +{(after - idle) / MIB:.0f} MiB after "
          f"(limit +{LIMIT // MIB} MiB)")
    assert [o.get("status") for o in outs] == [200] * (COUNT - 1) + [206], server.output()
    assert outs[-1]["range"] == f"bytes {FIRST}-{LAST}/{SIZE}"
    for n, out in enumerate(outs):
        assert out["sha256"] == _expected(n, ranged=n == COUNT - 1), f"download {n} differs"
    assert peak - idle < LIMIT, f"the server grew by {(peak - idle) / MIB:.0f} MiB"
    q.clear_all()
