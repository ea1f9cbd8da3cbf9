"""Redis Cluster mode (`redis+cluster://`), on three masters started by the test.

Each namespace lives in the slot of its hash tag, so every atomic step runs on
one shard; namespaces spread over the shards. Pub/sub waits, event streams,
the dashboard and /metrics must work as on a single server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlq import MLQ
from tests.http.conftest import ServerProcess
from tests.topologies import ClusterSetup

NAMESPACES = [f"shard_test_{i}" for i in range(12)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    setup = ClusterSetup(tmp_path_factory.mktemp("cluster"))
    try:
        yield setup.start()
    finally:
        setup.stop()


def test_namespaces_spread_over_the_shards_and_each_stays_on_one(cluster: ClusterSetup) -> None:
    owners = {}
    for namespace in NAMESPACES:
        with MLQ(namespace, redis_url=cluster.url) as q:
            q.post_many(range(3))
            q.create_listener(lambda msg, *args: msg)
        owner = cluster.node_owning(q.keys.prefix)
        owners[namespace] = owner.port
        # every key the namespace wrote is on its shard, none on the others
        assert owner.keys(q.keys.pattern), namespace
        for node in cluster.nodes:
            if node is not owner:
                assert not node.keys(q.keys.pattern), namespace
    assert len(set(owners.values())) == 3, owners


def test_jobs_round_trip_with_pub_sub_waits(cluster: ClusterSetup) -> None:
    q = MLQ("shard_round_trip", redis_url=cluster.url)
    try:
        q.create_listener(lambda msg, *args: msg * 2)
        ids = [q.post(n) for n in range(20)]
        assert [q.wait(job_id, timeout=20)["result"] for job_id in ids] == [n * 2 for n in range(20)]
        assert q.job(ids[0]).result(timeout=5) == 0
    finally:
        q.shutdown(timeout=10)
        q.clear_all()
        q.close()


def test_server_streams_events_and_serves_dashboard_and_metrics(cluster: ClusterSetup,
                                                                tmp_path: Path) -> None:
    namespace = "shard_server"
    server = ServerProcess(namespace=namespace, redis_url=cluster.url,
                           log_path=tmp_path / "server.log").start()
    q = MLQ(namespace, redis_url=cluster.url)
    try:
        job_id = requests.post(f"{server.url}/jobs", json={"msg": 21}, timeout=10).text.strip()
        with requests.get(f"{server.url}/jobs/{job_id}/events", stream=True, timeout=30) as stream:
            lines = stream.iter_lines(chunk_size=None)
            assert next(lines) == b"event: queued"
            q.create_listener(lambda msg, *args: msg * 2)
            events = [line for line in lines if line.startswith(b"event: ")]
        assert events[-1] == b"event: completed"
        assert requests.get(f"{server.url}/jobs/{job_id}", timeout=10).json()["result"] == 42
        assert requests.get(f"{server.url}/healthz", timeout=10).text == "ok"
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert f'mlq_jobs_completed_total{{namespace="{namespace}"}} 1.0' in metrics
        page = requests.get(f"{server.url}/ui", timeout=10)
        assert page.status_code == 200 and namespace in page.text
    finally:
        q.shutdown(timeout=10)
        q.clear_all()
        q.close()
        server.stop()
