"""The two HTTP servers of the HTTP benchmark, each in a process of its own.

    python http_apps.py mlq PORT REDIS_URL NAMESPACE
        MLQ's app (controller.app.create_app) on controller.server.make_server
    python http_apps.py bare PORT BLOB_BYTES SEED [stock]
        the baseline: a bare Flask app on gevent's WSGIServer (access log off),
        POST /jobs answers "hello", GET /blob answers the same bytes MLQ serves.
        It sets TCP_NODELAY on each connection unless `stock` is given: gevent's
        pywsgi writes the headers and the body of a response in two send() calls,
        so with Nagle's algorithm on (the default) every keep-alive response after
        the first waits for the client's delayed ACK, about 40 ms on Linux.
    python http_apps.py lpush PORT REDIS_URL
        the bare app whose POST /jobs pushes the body on a Redis list with one
        redis-py LPUSH: the least any Redis-backed enqueue does per request

gevent patches the standard library before anything else is imported, as
controller/__main__.py does for `controller server`. SIGTERM ends the process.
"""

if __name__ == "__main__":  # as a server; the harness imports blob() without patching itself
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, Response, request  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402


def blob(size: int, seed: int) -> bytes:
    """The result bytes both servers hand out (random, so nothing compresses them)."""
    return random.Random(seed).randbytes(size)


def serve_mlq(port: int, redis_url: str, namespace: str) -> None:
    from controller.app import create_app
    from controller.server import make_server
    from mlq.queue import MLQ
    logging.basicConfig(level=logging.WARNING)
    make_server(create_app(MLQ(namespace, redis_url=redis_url)), "127.0.0.1", port).serve_forever()


class NoDelayServer(WSGIServer):
    """WSGIServer that turns Nagle's algorithm off on every accepted connection."""

    def handle(self, sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve_bare(port: int, size: int, seed: int, stock: bool) -> None:
    payload = blob(size, seed)
    app = Flask("bare")

    @app.post("/jobs")
    def post_job() -> str:
        return "hello"

    @app.get("/blob")
    def get_blob() -> Response:
        return Response(payload, mimetype="application/octet-stream")

    server_class = WSGIServer if stock else NoDelayServer
    server_class(("127.0.0.1", port), app, log=None).serve_forever()


def serve_lpush(port: int, redis_url: str) -> None:
    import redis
    client = redis.Redis.from_url(redis_url)
    app = Flask("lpush")

    @app.post("/jobs")
    def post_job() -> str:
        return str(client.lpush("bench-http-lpush", request.get_data()))

    NoDelayServer(("127.0.0.1", port), app, log=None).serve_forever()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "mlq":
        serve_mlq(port, sys.argv[3], sys.argv[4])
    elif kind == "lpush":
        serve_lpush(port, sys.argv[3])
    else:
        serve_bare(port, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] == ["stock"])
