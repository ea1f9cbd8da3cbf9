"""Redis going away: workers wait and reconnect, never crash; the reaper runs continuously."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.supervisor import Supervisor
from tests import listeners


def test_workers_survive_a_redis_restart(tmp_path: Path, namespace: str) -> None:
    with EmbeddedServer(data_dir=tmp_path / "redis") as server:
        q = MLQ(namespace, redis_url=server.url)
        q.register_listener(listeners.double)
        supervisor = Supervisor(namespace, server.url, concurrency=1,
                                heartbeat_interval=0.2, heartbeat_timeout=3)
        thread = threading.Thread(target=supervisor.run, daemon=True)
        thread.start()
        in_process = MLQ(namespace, redis_url=server.url)
        in_process.create_listener()
        try:
            assert q.wait(q.post({"my_data": 1}), timeout=30)["result"] == 2
            time.sleep(1.2)  # let everysec flush the registry to the AOF
            server.kill()
            time.sleep(1.5)  # the outage lasts this long: workers meet a dead Redis and back off
            server.start()
            results = [q.wait(q.post({"my_data": n}), timeout=30)["result"] for n in range(5)]
            assert results == [0, 2, 4, 6, 8]
            assert thread.is_alive()
            assert all(t.is_alive() for t in in_process._consumer.threads)
        finally:
            in_process.shutdown(10)
            supervisor.request_stop()
            thread.join(30)
        assert not thread.is_alive()


def test_create_reaper_recovers_continuously(q: MLQ) -> None:
    job_id = q.post("m")
    # a worker takes it, then vanishes without a trace but its processing list
    q.client.lmove(q.keys.queue(), q.keys.processing("ghost"), "RIGHT", "LEFT")
    q.scripts.take("default", "ghost", time.time())  # starts the id it holds
    q.client.sadd(q.keys.workers, "ghost")
    q.create_reaper(call_how_often=0.2, job_timeout=300, max_retries=5)

    def upper(msg: str, *args: object) -> str:
        return msg.upper()

    q.create_listener(upper)
    record = q.wait(job_id, timeout=20)
    assert record["status"] == "completed" and record["retries"] == 1 and record["result"] == "M"
