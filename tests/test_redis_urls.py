"""The Redis URL forms: one server, Sentinel and Cluster, with credentials, TLS and
database, and a clear error for a malformed one (library: ValueError; CLI: exit 2).

Building a client connects to nothing, so these tests need no server; the
set-ups themselves are exercised in tests/test_cluster.py and
tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis.sentinel import SentinelConnectionPool

from mlq import MLQ
from mlq.connection import connect


def test_a_sentinel_url_names_sentinels_master_db_and_credentials() -> None:
    client = connect("redis+sentinel://user:s3cret@10.0.0.1:26379,sentinel-b/cache/3"
                     "?sentinel_password=watch")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "cache"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "s3cret", 3)
    sentinels = pool.sentinel_manager.sentinels
    addresses = [(s.connection_pool.connection_kwargs["host"],
                  s.connection_pool.connection_kwargs["port"]) for s in sentinels]
    assert addresses == [("10.0.0.1", 26379), ("sentinel-b", 26379)]
    assert all(s.connection_pool.connection_kwargs["password"] == "watch" for s in sentinels)


def test_a_tls_sentinel_url_uses_tls_to_sentinels_and_servers() -> None:
    client = connect("rediss+sentinel://h1:1,h2:2/main?ssl_cert_reqs=none")
    pool = client.connection_pool
    assert "SSL" in pool.connection_class.__name__
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert "SSL" in sentinel.connection_class.__name__


def test_a_cluster_url_keeps_its_credentials_and_tls() -> None:
    client = connect("rediss+cluster://:pw@h1:7000,h2:7001", slot_key="mlq:{ns}:")
    pool = client.connection_pool
    assert "SSL" in pool.connection_class.__name__
    assert pool.connection_kwargs["password"] == "pw"


def test_a_url_query_sets_the_socket_timeout() -> None:
    client = connect("redis://127.0.0.1:1/0?socket_timeout=30")
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 30.0


@pytest.mark.parametrize("url", [
    "redis+sentinel://h1:26379",                   # no master name
    "redis+sentinel://h1:26379/master/db",         # db not a number
    "redis+sentinel://h1:notaport/master",
    "redis+cluster://h1:7000/2",                   # a cluster has one database
    "redis+cluster://:7000",
])
def test_a_malformed_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        MLQ("urls", redis_url=url)


def test_the_cli_refuses_a_malformed_url_with_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "controller", "status", "1",
                           "--redis_url", "redis+sentinel://h1:26379"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "MASTER_NAME" in done.stderr
