"""Serving the app with gevent's WSGIServer, and the bind policy of SPEC §9.

The process must be monkey-patched by its entry point before anything else is
imported (controller/__main__.py does it for `server`); each request, and each
open event stream, is then a greenlet, and redis-py's sockets cooperate.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from typing import Any

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from mlq.errors import MLQError

log = logging.getLogger("mlq.http")

#: Seconds in-flight requests get to finish on SIGTERM before their greenlets
#: are killed (event streams never finish on their own).
STOP_TIMEOUT = 5.0


class BindRefused(MLQError):
    """A non-loopback address without an API token and without --insecure."""


def is_loopback(address: str) -> bool:
    """True when `address` (IP or host name) only reaches this machine."""
    host = address.strip().strip("[]")
    if not host:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback
                               for info in infos)


def check_bind(address: str, token: str | None, insecure: bool) -> None:
    """Raise BindRefused when `address` is reachable from outside with no token."""
    if token or insecure or is_loopback(address):
        return
    raise BindRefused(
        f"refusing to listen on {address!r} without an API token: anyone who can reach it "
        "could post jobs and upload code (POST /consumer) that your workers run. "
        "Set --token or MLQ_TOKEN, or pass --insecure if this network is trusted.")


class _NoDelayServer(WSGIServer):
    """Sends each response at once: gevent writes headers and body separately, and
    with Nagle's algorithm every keep-alive response after the first would wait
    about 40 ms for the client's delayed ACK."""

    def handle(self, sock: Any, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a unix socket): nothing to tune
        super().handle(sock, address)


def make_server(app: Flask, address: str = "127.0.0.1", port: int = 5000) -> WSGIServer:
    """A gevent WSGIServer for `app`, logging through the `mlq.http` loggers.

    The access log is written at INFO; when that level is off for it (as it is
    with the default WARNING), no line is formatted at all.
    """
    access = logging.getLogger("mlq.http.access")
    return _NoDelayServer((address, port), app,
                          log=access if access.isEnabledFor(logging.INFO) else None,
                          error_log=logging.getLogger("mlq.http.error"))


def _stop_at_eof(stop: Event) -> None:
    # read in gevent's thread pool: a plain read would block every greenlet
    gevent.get_hub().threadpool.apply(sys.stdin.buffer.read)
    log.warning("the parent process is gone: stopping")
    stop.set()


def serve_forever(app: Flask, address: str = "127.0.0.1", port: int = 5000, *,
                  stop_timeout: float = STOP_TIMEOUT, stop_on_stdin_eof: bool = False) -> None:
    """Serve `app` until SIGTERM or SIGINT, then stop cleanly and return.

    An entry point: it installs the signal handlers (and removes them on return).
    Requests still running `stop_timeout` s after the signal (open event streams)
    are cut. With `stop_on_stdin_eof`, the end of standard input stops it too:
    the parent that holds the other end of that pipe has died (even by SIGKILL).
    """
    server = make_server(app, address, port)
    stop = Event()
    handlers = [gevent.signal_handler(signum, stop.set)
                for signum in (signal.SIGTERM, signal.SIGINT)]
    try:
        if stop_on_stdin_eof:
            gevent.spawn(_stop_at_eof, stop)
        server.start()
        log.info("MLQ HTTP server listening on http://%s:%s", address, server.server_port)
        stop.wait()
        log.info("MLQ HTTP server stopping")
    finally:
        for handler in handlers:
            handler.cancel()
        # stops accepting at once, lets requests finish, then kills what is left
        server.stop(timeout=stop_timeout)
