"""Building the Redis client every MLQ object is handed.

Three kinds of URL reach one Redis-compatible server each:
- ``redis://``, ``rediss://``, ``unix://``: that server;
- ``redis+sentinel://H:P[,H:P...]/MASTER[/DB]``: whichever server the
  sentinels name as the master now, found again after every failover;
- ``redis+cluster://H:P[,H:P...]``: the shard that owns the namespace's slot.
  Every key of a namespace carries one hash tag (keys.py), so each atomic step
  runs on one shard, and namespaces spread over the shards by their tags.

The ``rediss+`` forms use TLS. Credentials and query options are those of a
plain URL; ``sentinel_username`` / ``sentinel_password`` in the query
authenticate with sentinels that have a password of their own.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import Connection, SSLConnection, parse_url
from redis.exceptions import AskError, ClusterDownError, TryAgainError
from redis.retry import Retry
from redis.sentinel import Sentinel

from .dispatch import close_dispatchers
from .embedded import default_password

#: A refused connection must surface fast (health checks answer within 2 s).
CONNECT_TIMEOUT = 2.0
#: How long a reply may take. Every MLQ step is a short script, so a silent
#: connection (a network that swallows packets, a host gone without a reset) is
#: given up after this and tried again on a new one: a longer wait is time a
#: worker sits idle after the network came back. A URL may set its own
#: (`?socket_timeout=30`), e.g. to send very large messages over a slow link.
SOCKET_TIMEOUT = 2.0
#: Heartbeats travel on connections of their own with a shorter timeout and no
#: retries: a heartbeat must never wait behind a hung socket (Clients.heartbeats).
HEARTBEAT_SOCKET_TIMEOUT = 1.0
#: redis-py 8 caps a pool at 100 connections, and refuses a call past the cap. Event
#: streams hold none (they share one subscription, dispatch.py), but a thousand of
#: them woken at once each read a record: the pool grows for that burst. This stays
#: well below Redis's own default limit of 10,000 clients, which every worker and
#: server of every host shares.
MAX_CONNECTIONS = 1_000

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379


def connect(redis_url: str | None = None, host: str = "localhost", port: int = DEFAULT_PORT,
            db: int = 0, *, slot_key: str = "", **options: object) -> redis.Redis:
    """A redis-py client that returns bytes, with short, bounded retries.

    `slot_key`: a key of the namespace, which picks the shard in cluster mode.
    """
    settings: dict[str, object] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "health_check_interval": 30,
        "max_connections": MAX_CONNECTIONS,
    }
    settings.update(options)
    if not redis_url:
        settings.setdefault("password", default_password(host, port))
        return redis.Redis(host=host, port=port, db=db, **settings)
    scheme = redis_url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        return _sentinel_client(redis_url, SENTINEL_SCHEMES[scheme], settings)
    if scheme in CLUSTER_SCHEMES:
        return _cluster_client(redis_url, CLUSTER_SCHEMES[scheme], slot_key, settings)
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        settings.pop("socket_keepalive")  # a TCP option: redis-py's unix connections refuse it
    if parts.scheme == "redis" and parts.password is None and "password" not in settings:
        settings["password"] = default_password(parts.hostname or "", parts.port or DEFAULT_PORT)
    return redis.Redis.from_url(redis_url, **settings)


class Clients:
    """The clients of one MLQ object: `main` for everything, and, built on first
    use, `heartbeats`, a client of the same server whose connections only
    heartbeats use (see HEARTBEAT_SOCKET_TIMEOUT). An MLQ handed a client of its
    own uses that one for both: there is nothing to build a second from."""

    def __init__(self, given: redis.Redis | None, redis_url: str | None, host: str,
                 port: int, db: int, slot_key: str) -> None:
        self._server = None if given else (redis_url, host, port, db)
        self._slot_key = slot_key
        self.main = given or connect(redis_url, host, port, db, slot_key=slot_key)
        self._heartbeats: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def heartbeats(self) -> redis.Redis:
        if self._server is None:
            return self.main
        with self._lock:
            if self._heartbeats is None:
                self._heartbeats = connect(*self._server, slot_key=self._slot_key,
                                           socket_timeout=HEARTBEAT_SOCKET_TIMEOUT,
                                           retry=Retry(NoBackoff(), 0), max_connections=4)
            return self._heartbeats

    def close(self) -> None:
        close_dispatchers(self.main)
        self.main.close()
        if self._heartbeats is not None:
            self._heartbeats.close()


# -- URLs with several hosts ----------------------------------------------------------
class _MultiHostURL:
    """`scheme://[user:password@]host:port[,host:port...]/path?query`, split up."""

    def __init__(self, url: str, default_port: int) -> None:
        scheme, _, rest = url.partition("://")
        netloc, slash, tail = rest.partition("/")
        path, _, query = (slash + tail).partition("?")
        if "?" in netloc:  # no path: the query follows the hosts
            netloc, _, query = netloc.partition("?")
        userinfo, at, hosts = netloc.rpartition("@")
        self.scheme = scheme
        self.userinfo = userinfo + at
        self.path = path
        self.options = dict(parse_qsl(query))
        self.hosts = [_host_and_port(item, default_port, url) for item in hosts.split(",")]

    def node_settings(self, tls: bool, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        """The connection options a plain URL with these credentials and query
        would give (redis-py parses them), without host, port and db."""
        query = urlencode({k: v for k, v in self.options.items() if k not in drop})
        plain = f"{'rediss' if tls else 'redis'}://{self.userinfo}localhost/?{query}"
        settings = parse_url(plain)
        for name in ("host", "port", "connection_class"):
            settings.pop(name, None)
        return settings


def _host_and_port(item: str, default_port: int, url: str) -> tuple[str, int]:
    try:
        parts = urlsplit("//" + item)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or not parts.hostname:
        raise ValueError(f"{url!r}: {item!r} is not HOST or HOST:PORT")
    return parts.hostname, port or default_port


# -- Sentinel ---------------------------------------------------------------------------
def _sentinel_client(url: str, tls: bool, settings: dict[str, Any]) -> redis.Redis:
    parsed = _MultiHostURL(url, DEFAULT_SENTINEL_PORT)
    names = [part for part in parsed.path.split("/") if part]
    if not 1 <= len(names) <= 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError(f"{url!r}: name the master after the hosts, as "
                         "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]")
    node = parsed.node_settings(tls, drop=("sentinel_username", "sentinel_password"))
    node["db"] = int(names[1]) if len(names) == 2 else 0
    sentinel_auth = {"username": parsed.options.get("sentinel_username"),
                     "password": parsed.options.get("sentinel_password")}
    sentinel_settings = {key: value for key, value in settings.items()
                         if key.startswith("socket_")}
    sentinel_settings.update({k: v for k, v in sentinel_auth.items() if v})
    if tls:
        sentinel_settings.update({k: v for k, v in node.items() if k.startswith("ssl")}, ssl=True)
        node["ssl"] = True
    sentinel = Sentinel(parsed.hosts, sentinel_kwargs=sentinel_settings)
    return sentinel.master_for(names[0], redis_class=redis.Redis, **{**settings, **node})


# -- Cluster ----------------------------------------------------------------------------
class _SlotOwner:
    """Where the shard that owns one slot is now, asked of the cluster (redis-py's
    RedisCluster) the first time and again after each refusal or lost connection."""

    def __init__(self, nodes: list[tuple[str, int]], slot_key: str,
                 settings: dict[str, Any]) -> None:
        self._nodes = nodes
        self._slot_key = slot_key
        self._settings = settings
        self._cluster: Any = None
        self._address: tuple[str, int] | None = None
        self._stale = False  # the cluster's map of slots must be read again
        self._lock = threading.Lock()

    def address(self) -> tuple[str, int]:
        with self._lock:
            if self._address is None:
                self._address = self._discover()
            return self._address

    def forget(self) -> None:
        with self._lock:
            self._address = None
            self._stale = True

    def _discover(self) -> tuple[str, int]:
        from redis.cluster import ClusterNode, RedisCluster
        from redis.exceptions import RedisClusterException

        try:
            if self._cluster is None:
                # built on first use: a client must be creatable while Redis is down
                self._cluster = RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
                    **self._settings)
            elif self._stale:
                self._cluster.nodes_manager.initialize()
            self._stale = False
            node = self._cluster.get_node_from_key(self._slot_key)
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"no cluster node answers: {exc}") from exc
        return node.host, node.port


class _SlotOwnerConnection(Connection):
    """A connection to whichever shard owns the namespace's slot now."""

    def __init__(self, *, slot_owner: _SlotOwner, **kwargs: Any) -> None:
        self.slot_owner = slot_owner
        super().__init__(**kwargs)

    def connect(self) -> None:
        return self.retry.call_with_retry(self._connect_to_owner,
                                          lambda _error: self.slot_owner.forget())

    def _connect_to_owner(self) -> None:
        if self._sock:
            return
        self.host, self.port = self.slot_owner.address()
        self.connect_check_health(check_health=True, retry_socket_connect=False)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except (AskError, ClusterDownError, TryAgainError) as exc:
            # the slot moved (resharding, a failover): look it up again, and let the
            # client's retry send the command to its new owner
            self.disconnect()
            self.slot_owner.forget()
            raise redis.ConnectionError(f"the namespace's slot moved: {exc}") from exc


class _SlotOwnerSSLConnection(_SlotOwnerConnection, SSLConnection):
    pass


def _cluster_client(url: str, tls: bool, slot_key: str,
                    settings: dict[str, Any]) -> redis.Redis:
    parsed = _MultiHostURL(url, DEFAULT_PORT)
    if parsed.path.strip("/"):
        raise ValueError(f"{url!r}: a cluster has one database; give no path after the hosts")
    node = parsed.node_settings(tls)
    node.pop("db", None)
    discovery = {key: value for key, value in {**settings, **node}.items()
                 if key.startswith(("socket_", "ssl", "username", "password"))}
    if tls:
        discovery["ssl"] = True
    pool = redis.ConnectionPool(
        connection_class=_SlotOwnerSSLConnection if tls else _SlotOwnerConnection,
        slot_owner=_SlotOwner(parsed.hosts, slot_key, discovery), **{**settings, **node})
    return redis.Redis.from_pool(pool)  # closing the client closes the pool
