"""Shared round trips for the script calls on the hot paths: posts, and a
worker's finish of its last jobs with the take of its next.

Calls made from several threads or greenlets while a round trip is on the wire
wait and go out together in the next one (auto-pipelining, as ioredis and
Lettuce do it), so a busy web server pays one send and one receive for many
posts. A lone call goes straight out. Unlike a redis-py pipeline of scripts,
no SCRIPT EXISTS round trip goes before each batch: each script is loaded once
per connection, in the same round trip as its first call.

The calls travel over one connection of their own, made with the client's
connection settings, rather than through redis-py's command path: that path
checks the pool and polls the socket before every command and records metrics
after it, about 30 µs of Python per call on a 2-core machine, a fifth of a
post. Only one batch is ever on the wire, so one connection is all it needs.

Only calls that are safe to send twice belong here: when the connection is
lost, the whole batch is sent again under the client's retry policy. A post
carries a token, so a post sent twice returns the id of the first; a finish
sent twice changes nothing; jobs a lost take started wait in the worker's
processing list, and the take sent again hands them over.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Sequence

import hiredis
import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from .worker_link import WorkerLink


def _disconnect_all(connections: list[Any]) -> None:
    for connection in connections:
        connection.disconnect()


class _Call:
    __slots__ = ("script", "args", "again", "sent", "reply", "error", "done", "lead",
                 "abandoned")

    def __init__(self, script: Script | None, args: Sequence[Any],
                 again: Sequence[Any] | None = None) -> None:
        self.script = script
        self.args = args
        #: the arguments to send once it may have run: a post then looks for the job
        #: it made (post.lua), since its reply may be all that was lost
        self.again = again
        self.sent = False
        self.reply: Any = None
        self.error: BaseException | None = None
        self.done: threading.Event | None = None  # only a call that waits for another's trip
        self.lead = False
        self.abandoned = False  # its caller was interrupted: nobody waits for it

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


class SharedRoundTrips:
    """EVALSHA calls of `client`'s server, batched while one is in flight."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        #: the connection, where a finalizer can reach it: an MLQ left to the garbage
        #: collector sits in reference cycles, and the collector may finalize its
        #: socket before the connection (ResourceWarning: unclosed socket). Weak
        #: reference callbacks run first, so this one closes the socket in time.
        self._open: list[Any] = []
        weakref.finalize(self, _disconnect_all, self._open)
        self._reset()

    def _reset(self) -> None:
        # a forked child starts afresh: the parent's socket and lock are not its own
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._sending = False
        self._connection: Any = None
        self._open.clear()  # after a fork the parent's connection is not ours to close
        self._loaded: set[str] = set()  # scripts loaded through this connection

    def evalsha(self, script: Script, numkeys: int, *keys_and_args: Any) -> Any:
        """The script's reply, as `script(keys, args)` would give it."""
        return self.evalsha_many([(script, (numkeys, *keys_and_args))])[0]

    def evalsha_many(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each call's reply, all sent in one round trip, in order; the first
        error reply is raised. Each call: (script, arguments) or (script, arguments,
        the arguments to send instead once it may have run). A call without a
        script is a plain command, whose arguments are the command's words."""
        if os.getpid() != self._pid:
            self._reset()
        mine = [_Call(*call) for call in calls]
        last = mine[-1]  # the one that waits or leads for the group
        with self._lock:
            self._queued += mine
            if self._sending:
                last.done = threading.Event()
            else:
                self._sending = True
                last.lead = True
        if not last.lead:
            try:
                last.done.wait()  # type: ignore[union-attr]
            except BaseException:  # this caller was interrupted (its greenlet killed)
                self._abandon(mine)
                raise
        if last.lead:  # this caller sends the next batch, its own calls included
            batch: list[_Call] = []
            try:
                with self._lock:
                    batch, self._queued = self._queued, []
                self._send(batch)
            except BaseException:
                # interrupted mid-trip: the other callers' calls go out again in the
                # next round trip (each is safe to send twice)
                with self._lock:
                    self._queued[:0] = [call for call in batch
                                        if call not in mine and not call.abandoned]
                raise
            finally:
                with self._lock:
                    self._hand_on()
        return [call.outcome() for call in mine]

    def _hand_on(self) -> None:
        """Let the next waiting caller send the queued calls (the lock is held)."""
        # queued groups each end with a call that waits: it leads next
        follower = next((call for call in self._queued if call.done is not None), None)
        if follower is not None:
            follower.lead = True
            follower.done.set()  # type: ignore[union-attr]
        else:
            self._sending = False

    def _abandon(self, mine: list[_Call]) -> None:
        """An interrupted caller's calls leave the queue, and the turn to send,
        if it had just been handed to it, passes on."""
        with self._lock:
            for call in mine:
                call.abandoned = True
            self._queued = [call for call in self._queued if call not in mine]
            if mine[-1].lead:
                self._hand_on()

    def _send(self, batch: list[_Call]) -> None:
        """Send a batch; every call gets its reply or the error that stopped it.
        An interruption (a BaseException) leaves the calls as they were."""
        try:
            connection = self._connection or self._new_connection()
            retry: Retry = connection.retry
            retry.call_with_retry(lambda: self._round_trip(connection, batch),
                                  lambda _error: connection.disconnect())
        except Exception as exc:
            for call in batch:
                if call.error is None and call.reply is None:
                    call.error = exc
        for call in batch:
            if call.done is not None and not call.lead:
                call.done.set()

    def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()

    def _new_connection(self) -> Any:
        # made apart from the pool: it must not take one of the pool's places
        # (redis-py 8 caps a pool at 100 connections)
        self._connection = self._pool.connection_class(**self._pool.connection_kwargs)
        self._connection.register_connect_callback(self._connected)
        self._open[:] = [self._connection]
        return self._connection

    def _connected(self, _connection: Any) -> None:
        self._loaded.clear()  # a new connection may have reached a restarted server

    def _round_trip(self, connection: Any, batch: list[_Call]) -> None:
        pending = batch
        for _ in range(2):  # the second pass only after Redis lost scripts (SCRIPT FLUSH)
            connection.connect()  # at once if connected; a reconnect forgets what was loaded
            # A script is loaded ahead of its first call on a connection, in the same
            # round trip: answered with NOSCRIPT instead, a call sent again would run
            # after the calls that followed it (a take before the finish it follows).
            commands, readers = [], []
            for call in pending:
                script = call.script
                if script is None:  # a plain command, such as the WAIT after a post
                    commands.append(hiredis.pack_command(tuple(call.args)))
                    readers.append(call)
                    continue
                if script.sha not in self._loaded:
                    self._loaded.add(script.sha)
                    commands.append(hiredis.pack_command(("SCRIPT", "LOAD", script.script)))
                    readers.append(None)
                args = call.again if call.sent and call.again is not None else call.args
                call.sent = True
                # hiredis packs in C what redis-py's packer walks argument by argument
                commands.append(hiredis.pack_command(("EVALSHA", script.sha, *args)))
                readers.append(call)
            unloaded: list[_Call] = []
            try:
                connection.send_packed_command([b"".join(commands)], check_health=False)
                for call in readers:
                    try:
                        reply = connection.read_response()
                    except NoScriptError:
                        unloaded.append(call)  # type: ignore[arg-type]
                        continue
                    except ResponseError as exc:
                        if call is None:
                            raise
                        call.error = exc
                        continue
                    if call is not None:
                        call.reply, call.error = reply, None
            except BaseException:
                connection.disconnect()  # a reply may be left unread on it
                raise
            if not unloaded:
                return
            self._loaded.clear()
            # a plain command goes out again too: a WAIT must follow the writes it confirms
            pending = [call for call in pending if call in unloaded or call.script is None]
        raise NoScriptError("Redis lost the scripts again while they were loaded")


class Together:
    """Steps collected to go out in one round trip (see Scripts.together); a
    finish followed by a take go as one script call (finish_take.lua)."""

    def __init__(self, round_trips: SharedRoundTrips, scripts: dict[str, Any]) -> None:
        self.round_trips, self.scripts = round_trips, scripts
        self.calls: list[tuple[Any, Sequence[Any]]] = []

    def send(self, then_wait: tuple[WorkerLink, Sequence[str], float] | None = None
             ) -> list[Any]:
        """Each step's reply, in order. `then_wait`: a finish and a take go out on
        the worker's link, with a BLPOP of these keys for that long after them."""
        if [script for script, _ in self.calls] == [self.scripts["finish"], self.scripts["take"]]:
            (_, finish), (_, take) = self.calls  # each (number of keys, *keys, *args)
            args = (finish[0] + take[0], *finish[1:finish[0] + 1], *take[1:take[0] + 1],
                    finish[0], len(finish) - 1 - finish[0],
                    "" if then_wait is None else repr(then_wait[2]),
                    *finish[finish[0] + 1:], *take[take[0] + 1:])
            script = self.scripts["finish_take"]
            if then_wait is not None:
                link, keys, timeout = then_wait
                return link.finish_take(script, args, keys, timeout)[:2]
            return self.round_trips.evalsha_many([(script, args)])[0][:2]
        return self.round_trips.evalsha_many(self.calls)
