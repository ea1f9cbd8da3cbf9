"""A worker's own connection, on which the end of one job and the wait for the
next go out together.

A worker that runs out of work records its outcome and takes its next job in
one script call (finish_take.lua), then blocks on its inbox (BLPOP) until a
post hands it a job. Sent one after the other, that is two requests for Redis
to read and the worker to make at the moment the waiting client is woken, on
a machine where all three share the cores. Here the BLPOP is written along
with the script call, and its reply read only when the worker next waits.

A BLPOP must not block when the take started jobs, when the worker's listeners
are out of date, or when a scheduled job is due before it would end: the script
then pushes a note of nothing on the inbox, which the BLPOP pops at once, and
says so (its third reply), so the note's reply is read here.

The connection is the worker loop's alone: a blocked BLPOP would hold up any
other caller on it. Whatever goes wrong, the connection is closed, which ends
the BLPOP in Redis; a hand-over it had already popped leaves the job in the
worker's processing list, where its next take finds it (a stray).
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import hiredis
import redis
from redis.commands.core import Script

#: Seconds a read waits beyond the BLPOP's own time before the connection is
#: taken for lost.
READ_MARGIN = 2.0


def _disconnect_all(connections: list[Any]) -> None:
    for connection in connections:
        connection.disconnect()


class WorkerLink:
    """One connection of a worker loop: finish_take and the BLPOP after it."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._open: list[Any] = []  # where the finalizer finds the socket (roundtrips.py)
        weakref.finalize(self, _disconnect_all, self._open)
        self._loaded: set[str] = set()
        #: a BLPOP was sent and its reply is still to be read (wait())
        self.waiting = False
        self._timeout = 0.0

    def finish_take(self, script: Script, args: Sequence[Any], wait_on: Sequence[str],
                    timeout: float) -> Any:
        """finish_take's reply for `args` (its ARGV[3] must be `timeout`); the BLPOP of
        `wait_on` for `timeout` seconds that follows it is left to wait(), unless
        the script nudged it (then it is read here)."""
        connection = self._connection()
        load = script.sha not in self._loaded
        commands = [hiredis.pack_command(("SCRIPT", "LOAD", script.script))] if load else []
        commands += [hiredis.pack_command(("EVALSHA", script.sha, *args)),
                     hiredis.pack_command(("BLPOP", *wait_on, repr(timeout)))]
        try:
            connection.send_packed_command([b"".join(commands)], check_health=False)
            if load:
                connection.read_response()
                self._loaded.add(script.sha)
            self.waiting, self._timeout = True, timeout
            reply = connection.read_response()
            if reply[2]:
                self.wait()  # the note of nothing: popped at once
            return reply
        except BaseException:
            self.close()  # the BLPOP may be blocked, or a reply left unread
            raise

    def wait(self) -> list[bytes] | None:
        """The BLPOP's reply: [key, value], or None when its time passed."""
        try:
            reply = self._connection().read_response(timeout=self._timeout + READ_MARGIN)
        except BaseException:
            self.close()
            raise
        self.waiting = False
        return reply

    def close(self) -> None:
        self.waiting = False
        for connection in self._open:
            connection.disconnect()
        self._open.clear()

    def _connected(self, _connection: Any) -> None:
        self._loaded.clear()  # a new connection may have reached a restarted server

    def _connection(self) -> Any:
        if not self._open:
            # apart from the pool, as the shared round trips' (roundtrips.py)
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            connection.register_connect_callback(self._connected)
            self._open.append(connection)
        connection = self._open[0]
        connection.connect()  # at once when connected
        return connection
