"""Serving the app with gevent's WSGIServer, and the bind policy of SPEC §9.

The process must be monkey-patched by its entry point before anything else is
imported (controller/__main__.py does it for `server`); each request, and each
open event stream, is then a greenlet, and redis-py's sockets cooperate.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import time
from typing import Any

import gevent
from flask import Flask
from gevent.event import Event
from gevent import Timeout
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.socket import wait_read

from mlq.errors import MLQError

log = logging.getLogger("mlq.http")

#: Seconds in-flight requests get to finish on SIGTERM before their greenlets
#: are killed (event streams never finish on their own).
STOP_TIMEOUT = 5.0
#: The descriptor `controller server` watches for its parent's end (PARENT_PIPE_VAR).
STDIN = 0


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


#: Seconds a client may take to send a request's line and headers (and an idle
#: keep-alive connection may wait for its next request) before it is cut off.
HEADER_TIMEOUT = 10.0
#: Connections served at once. Beyond it, the connection that has waited longest
#: for its headers is cut to make room, or, when every one is busy with a
#: request, the newcomer gets 503.
MAX_CONNECTIONS = 1000

_BUSY_BODY = b'{"error": "too many connections: try again soon"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class _CutOff(BaseException):
    """Raised in a connection's greenlet when its headers took too long.

    A BaseException, like gevent's Timeout: pywsgi turns any Exception raised
    while reading headers into a 400 answer, and this one must close quietly.
    """


class _Handler(WSGIHandler):
    """Times the header phase of each request, and tells the server which
    connections are in it (those are the ones it may cut to make room)."""

    server: _Server

    def read_requestline(self) -> str:
        self._timer = Timeout.start_new(self.server.header_timeout, _CutOff)
        self.server.reading[self] = gevent.getcurrent()
        return super().read_requestline()  # type: ignore[no-any-return]

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            self._headers_read()

    def handle_one_request(self) -> Any:
        try:
            return super().handle_one_request()
        except _CutOff:
            return None  # closes the connection
        finally:
            self._headers_read()

    def _headers_read(self) -> None:
        timer = self.__dict__.pop("_timer", None)
        if timer is not None:
            timer.close()
        self.server.reading.pop(self, None)


class _Server(WSGIServer):
    """gevent's WSGIServer with TCP_NODELAY, a header-read timeout and a bound on
    connections that slow or idle clients cannot use up."""

    handler_class = _Handler

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open_connections = 0
        #: connections waiting for a request's headers (with their greenlets),
        #: longest waiting first
        self.reading: dict[_Handler, Any] = {}

    def handle(self, sock: Any, address: Any) -> None:
        if self.open_connections >= self.max_connections and not self._cut_slowest():
            _refuse(sock)
            return
        # Each response is sent at once: gevent writes headers and body separately,
        # and with Nagle's algorithm every keep-alive response after the first
        # would wait about 40 ms for the client's delayed ACK.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a unix socket): nothing to tune
        self.open_connections += 1
        try:
            super().handle(sock, address)
        finally:
            self.open_connections -= 1

    def _cut_slowest(self) -> bool:
        for handler, reader in self.reading.items():
            del self.reading[handler]
            # raised where it waits for its headers; it then closes its connection
            reader.kill(_CutOff, block=False)
            return True
        return False


def _refuse(sock: Any, linger: float = 1.0) -> None:
    """Answer 503 and close. The request is read out first (for up to `linger` s):
    closing with unread data would reset the connection before the answer is read."""
    try:
        sock.sendall(_BUSY)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(linger)
        deadline = time.monotonic() + linger
        while sock.recv(16384) and time.monotonic() < deadline:
            pass
    except OSError:
        pass  # the client went first: nothing more to do
    finally:
        sock.close()


def make_server(app: Flask, address: str = "127.0.0.1", port: int = 5000, *,
                header_timeout: float = HEADER_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> WSGIServer:
    """A gevent WSGIServer for `app`, logging through the `mlq.http` loggers.

    The access log is written at INFO; when that level is off for it (as it is
    with the default WARNING), no line is formatted at all.
    """
    access = logging.getLogger("mlq.http.access")
    return _Server((address, port), app,
                   log=access if access.isEnabledFor(logging.INFO) else None,
                   error_log=logging.getLogger("mlq.http.error"),
                   header_timeout=header_timeout, max_connections=max_connections)


def _stop_at_eof(stop: Event) -> None:
    # Waits in gevent's hub and reads the descriptor, not sys.stdin: a thread
    # blocked in sys.stdin.buffer.read() holds that buffer's lock, and the
    # interpreter, closing stdin as it exits, then aborts with "Fatal Python
    # error: _enter_buffered_busy". A greenlet holds no lock.
    while True:
        wait_read(STDIN)
        if not os.read(STDIN, 65536):
            break
    log.warning("the parent process is gone: stopping")
    stop.set()


def serve_forever(app: Flask, address: str = "127.0.0.1", port: int = 5000, *,
                  stop_timeout: float = STOP_TIMEOUT, stop_on_stdin_eof: bool = False,
                  header_timeout: float = HEADER_TIMEOUT,
                  max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve `app` until SIGTERM or SIGINT, then stop cleanly and return.

    An entry point: it installs the signal handlers (and removes them on return).
    Requests still running `stop_timeout` s after the signal (open event streams)
    are cut. With `stop_on_stdin_eof`, the end of standard input stops it too:
    the parent that holds the other end of that pipe has died (even by SIGKILL).
    """
    server = make_server(app, address, port, header_timeout=header_timeout,
                         max_connections=max_connections)
    stop = Event()
    handlers = [gevent.signal_handler(signum, stop.set)
                for signum in (signal.SIGTERM, signal.SIGINT)]
    watcher = gevent.spawn(_stop_at_eof, stop) if stop_on_stdin_eof else None
    try:
        server.start()
        log.info("MLQ HTTP server listening on http://%s:%s", address, server.server_port)
        stop.wait()
        log.info("MLQ HTTP server stopping")
    finally:
        if watcher is not None:
            watcher.kill(block=False)
        for handler in handlers:
            handler.cancel()
        # stops accepting at once, lets requests finish, then kills what is left
        server.stop(timeout=stop_timeout)
