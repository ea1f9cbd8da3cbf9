"""Building the Redis client every MLQ object is handed."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .embedded import default_password

#: A refused connection must surface fast (health checks answer within 2 s);
#: a silent Redis must not hang a worker forever.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 30.0
#: redis-py 8 caps a pool at 100 connections; the HTTP server holds one per open
#: event stream (pub/sub), so that cap would refuse the 100th viewer. It caps
#: streams at 500 (--max_streams); this stays well below Redis's own default limit
#: of 10,000 clients, which every worker and server of every host shares.
MAX_CONNECTIONS = 1_000


def connect(redis_url: str | None = None, host: str = "localhost", port: int = 6379,
            db: int = 0, **options: object) -> redis.Redis:
    """A redis-py client that returns bytes, with short, bounded retries."""
    settings: dict[str, object] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "health_check_interval": 30,
        "max_connections": MAX_CONNECTIONS,
    }
    settings.update(options)
    if redis_url:
        parts = urlsplit(redis_url)
        if parts.scheme == "redis" and parts.password is None and "password" not in settings:
            settings["password"] = default_password(parts.hostname or "", parts.port or 6379)
        return redis.Redis.from_url(redis_url, **settings)
    settings.setdefault("password", default_password(host, port))
    return redis.Redis(host=host, port=port, db=db, **settings)
