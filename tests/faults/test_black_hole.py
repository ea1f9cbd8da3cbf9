"""A network that swallows everything for 10 s, in the middle of 1,000 jobs.

Two `controller consumer` commands (two worker processes each, and the reaper
in one of them) reach Redis through a loopback proxy. For 10 s the proxy keeps
every socket open, accepts new ones, and forwards nothing, as a dead link or a
stuck firewall does: no error, no reset, only silence. Then it forwards again.

Pass: workers take jobs again within 3 s of the network returning; no live
worker is declared dead (nothing is requeued, no job runs twice), so the
heartbeats did not wait behind a hung socket; every job completes.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from pathlib import Path

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.heartbeat import workers
from tests.faults.conftest import Commands, base_env, wait_until

JOBS = 1_000
HOLE = 10.0
RETURN_WITHIN = 3.0


class SilentProxy:
    """Forwards TCP between a listening port and Redis; `silent` swallows all of it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.silent.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for end in self.sockets:
            end.close()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_silent_network_for_10_s_strands_nobody(own_redis: EmbeddedServer,
                                                  commands: Commands, tmp_path: Path) -> None:
    proxy = SilentProxy((own_redis.host, own_redis.port))
    namespace = "hole"
    url = f"redis://127.0.0.1:{proxy.port}/0"
    env = base_env(MLQ_REDIS_URL=url, MLQ_NAMESPACE=namespace)
    try:
        for i, extra in enumerate(([], ["--reaper"])):
            commands.start(f"consumer{i}", "consumer", "--concurrency", "2",
                           "--import", "tests.faults.listeners:record", *extra, env=env)
        q = MLQ(namespace, redis_url=own_redis.url)  # the test itself goes around the proxy
        wait_until(lambda: sum(w["alive"] for w in workers(q.client, q.keys)) == 4, 60,
                   f"4 workers\n{commands.outputs()}")
        log = tmp_path / "executions.log"
        ids = q.post_many([{"log": str(log), "sleep": 0.01}] * JOBS)
        wait_until(lambda: q.stats()["completed"] >= JOBS // 4, 60, "a quarter of the jobs")

        proxy.silent.set()
        time.sleep(HOLE)  # the fault itself lasts this long: nothing to wait for
        before = len(log.read_text().splitlines())
        proxy.silent.clear()
        returned = time.monotonic()
        wait_until(lambda: len(log.read_text().splitlines()) > before, 30, "a job taken again")
        back_after = time.monotonic() - returned

        wait_until(lambda: q.stats()["completed"] == JOBS, 90,
                   f"every job completed\n{commands.outputs()}")
        runs = collections.Counter(line.split()[0] for line in log.read_text().splitlines())
        twice = [job_id for job_id in ids if runs[job_id] > 1]
        stats = q.stats()
        print(f"\nsilent network for {HOLE:.0f} s: workers took jobs again {back_after:.1f} s "
              f"after it came back; {stats['requeued']} requeued, {len(twice)} run twice, "
              f"{stats['completed']} of {JOBS} completed")
        assert back_after < RETURN_WITHIN
        assert stats["requeued"] == 0, commands.outputs()
        assert not twice
        assert sum(w["alive"] for w in workers(q.client, q.keys)) == 4
    finally:
        proxy.close()
