"""One pub/sub connection per process and namespace, shared by every wait, event
stream and chunk reader in it.

The connection subscribes once, with patterns matching every job's event and
chunk channels (Keys.events_pattern, Keys.chunks_pattern). Listening costs no
Redis command at all, so a wait is one status read on top of the post, and a
thousand open event streams hold one connection.

Whoever waits reads: a reader blocked in Inbox.get with nobody else reading
reads the connection itself and hands on what belongs to others, until its
own message comes; then the next waiting reader takes over. A lone wait so
gets its event without a thread in between (two thread switches, about a
fifth of a round trip on a small machine). While nobody waits, a tender
thread (a greenlet under gevent) empties the connection every READ_TIMEOUT,
so that Redis holds no backlog for it, and closes it after IDLE_CLOSE seconds
without a listener.

The price: while anyone in the process listens, every event of the namespace
reaches it; the reader only looks up the channel of those nobody listens to.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import redis

from .errors import REDIS_DOWN
from .keys import Keys
from .recent import RecentMessages

#: What an inbox yields when messages may have been lost (the connection was
#: made again): its reader should look at the state itself.
RESYNC = object()

#: Seconds without a listener before the shared connection closes.
IDLE_CLOSE = 30.0
#: How long a reader blocks per read, and how often the tender empties the
#: connection while nobody reads it (and notices idleness).
READ_TIMEOUT = 1.0
#: Pauses between attempts to read again after the connection failed.
RETRY_PAUSES = (0.1, 1.0)


class Inbox:
    """The messages of some channels for one reader, in order."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._messages: collections.deque[Any] = collections.deque()
        self._arrived = threading.Event()  # a message, or the turn to read
        self._dispatcher = dispatcher
        #: every message of its channels since the mark it was opened with has
        #: been put in (Dispatcher.listen): its reader need not look at the state
        self.caught_up = False

    def put(self, message: Any) -> None:
        self._messages.append(message)
        self._arrived.set()

    def clear(self) -> None:
        self._messages.clear()

    def get(self, timeout: float | None) -> Any:
        """The next message (bytes, or RESYNC); None when `timeout` passes first."""
        return self._dispatcher.next_message(self, timeout)


class _CountingPubSub(redis.client.PubSub):
    """Counts its connections: redis-py makes a lost one again and subscribes anew
    by itself, and what was published meanwhile is gone, which readers must hear."""

    connects = 0

    def on_connect(self, connection: Any) -> None:
        self.connects += 1
        super().on_connect(connection)


class Dispatcher:
    """The shared subscription of one client's server and one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._pool = client.connection_pool
        self._patterns = (keys.events_pattern, keys.chunks_pattern)
        self._lock = threading.Lock()
        self._inboxes: dict[bytes, set[Inbox]] = {}
        self._pubsub: _CountingPubSub | None = None
        self._tender: threading.Thread | None = None
        #: someone reads the connection (a waiting reader, or the tender); the
        #: readers waiting meanwhile, in order, for a message or their turn
        self._reading = False
        self._waiting: collections.deque[Inbox] = collections.deque()
        self._connects = 0
        self._idle_since = time.monotonic()
        self._closed = False
        self.pid = os.getpid()
        # what mark() and listen(since=) compare: a new connection or subscription
        # starts a new epoch; messages are numbered as they arrive
        self._epoch = self._received = 0
        self._recent = RecentMessages()

    def mark(self) -> tuple[int, int] | None:
        """Where the subscription stands, taken before a post is sent: a listen
        `since` it then hands over what the post's job published in between (None
        while not subscribed)."""
        with self._lock:
            if self._pubsub is None or self._closed:
                return None
            return self._epoch, self._received

    @contextmanager
    def listen(self, *channels: str, since: tuple[int, int] | None = None) -> Iterator[Inbox]:
        """One inbox of the messages of `channels`, from now until the block ends.

        Subscribed before this returns, so a state read after it and the messages
        that follow miss nothing in between. With `since` (a mark), the latest
        message of each channel since the mark is put in first where all of them
        are known, and the inbox says so (caught_up): then no state need be read.
        """
        inbox = Inbox(self)
        names = [channel.encode() for channel in channels]
        if since is None:
            # what lies unread came before this listen (the tender reads only now
            # and then): an old outcome must not end a wait for the job's next run
            self._read_what_came()
        with self._lock:
            for name in names:
                self._inboxes.setdefault(name, set()).add(inbox)
            if since is not None and self._knows_all_since(since):
                inbox.caught_up = True
                for name in names:
                    for data in self._recent.take_latest(name, since[1]):
                        inbox.put(data)
        try:
            self.subscribe()
            yield inbox
        finally:
            with self._lock:
                for name in names:
                    listeners = self._inboxes.get(name)
                    if listeners is not None:
                        listeners.discard(inbox)
                        if not listeners:
                            del self._inboxes[name]
                if not self._inboxes:
                    self._idle_since = time.monotonic()

    def listeners(self) -> int:
        with self._lock:
            return len({id(inbox) for inboxes in self._inboxes.values() for inbox in inboxes})

    def _knows_all_since(self, mark: tuple[int, int]) -> bool:
        """Every message since `mark` arrived on the connection of now and is still
        kept (or was handed on): none was lost or dropped from the recent ones."""
        return (self._pubsub is not None and mark[0] == self._epoch
                and self._recent.knows_all_since(mark[1]))

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._epoch += 1
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()

    # -- reading ---------------------------------------------------------------
    def next_message(self, inbox: Inbox, timeout: float | None) -> Any:
        """Inbox.get: the inbox's next message, reading the connection meanwhile
        where nobody else does; None when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                inbox._arrived.clear()  # before the look: a put after it sets it again
                remaining = None if deadline is None else deadline - time.monotonic()
                if inbox._messages or (remaining is not None and remaining <= 0):
                    if not self._reading:
                        self._pass_turn()  # it may have been handed to this reader
                    return inbox._messages.popleft() if inbox._messages else None
                reads = not self._reading and self._pubsub is not None and not self._closed
                if reads:
                    self._reading = True
                else:
                    self._waiting.append(inbox)
            if reads:
                try:
                    reads = self._read_for(inbox, deadline)
                finally:
                    with self._lock:
                        self._reading = False
                        self._pass_turn()
                if reads:
                    continue
                with self._lock:  # no connection to read: wait for a RESYNC or the time
                    self._waiting.append(inbox)
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            inbox._arrived.wait(remaining)
            with self._lock:
                if inbox in self._waiting:
                    self._waiting.remove(inbox)

    def _pass_turn(self) -> None:
        """Wake the longest waiting reader to read next (the lock is held)."""
        if self._waiting and self._pubsub is not None:
            self._waiting.popleft()._arrived.set()

    def _read_for(self, inbox: Inbox, deadline: float | None) -> bool:
        """Read and hand on messages until `inbox` has one or `deadline` passes;
        False when there is no connection to read."""
        pause = RETRY_PAUSES[0]
        while not inbox._messages:
            wait = READ_TIMEOUT if deadline is None else min(deadline - time.monotonic(),
                                                              READ_TIMEOUT)
            if wait <= 0:
                return True
            try:
                if self._read_once(wait) is None:
                    return False
                pause = RETRY_PAUSES[0]
            except REDIS_DOWN:
                # redis-py makes the connection again on the next read; readers keep
                # looking at their jobs' state themselves meanwhile
                time.sleep(min(pause, wait))
                pause = min(pause * 2, RETRY_PAUSES[1])
            except (ValueError, AttributeError, OSError):
                # the connection was closed under the read (close()), or broke in a
                # way redis-py does not mend
                self._drop_broken()
        return True

    def subscribe(self) -> None:
        """Make the connection and its subscription, once (REDIS_DOWN if it fails)."""
        with self._lock:
            if self._pubsub is not None:
                return
            pubsub = _CountingPubSub(self._pool)
            try:
                pubsub.psubscribe(*self._patterns)
                # confirmed before anyone reads a state it relies on
                confirmed = 0
                while confirmed < len(self._patterns):
                    message = pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is None:
                        raise redis.TimeoutError("no answer to PSUBSCRIBE")
                    confirmed += message["type"] == "psubscribe"
            except BaseException:
                pubsub.close()
                raise
            self._pubsub, self._connects = pubsub, pubsub.connects
            self._epoch += 1
            if self._tender is None or not self._tender.is_alive():
                self._tender = threading.Thread(target=_tend, args=(weakref.ref(self),),
                                                name="mlq-dispatch", daemon=True)
                self._tender.start()
            self._pass_turn()  # readers that found no connection may read now

    def _read_once(self, timeout: float) -> bool | None:
        """Read and hand on what arrives within `timeout`: whether anything came
        (None: there is no connection)."""
        pubsub = self._pubsub
        if pubsub is None or self._closed:
            return None
        message = pubsub.get_message(timeout=timeout)
        if message is None:
            return False
        if message["type"] == "pmessage":
            with self._lock:
                self._received += 1
                inboxes = list(self._inboxes.get(message["channel"], ()))
                self._recent.keep(self._received, message["channel"], message["data"])
            for inbox in inboxes:
                inbox.put(message["data"])
        elif message["type"] == "psubscribe" and pubsub.connects != self._connects \
                and message["data"] == len(self._patterns):
            # subscribed again after a new connection: what was published while it
            # was down is lost, so readers look for themselves
            self._connects = pubsub.connects
            with self._lock:
                self._epoch += 1
            self._tell_all(RESYNC)
        return True

    def _tend_once(self) -> bool:
        """The tender's round: empty the connection where nobody reads it, close it
        when idle; False once there is no connection to tend."""
        with self._lock:
            if self._pubsub is None or self._closed:
                return False
            if self._reading:
                return True
            if not self._inboxes and time.monotonic() - self._idle_since > IDLE_CLOSE:
                # the next listener makes a new connection, and a tender for it
                pubsub, self._pubsub, self._tender = self._pubsub, None, None
                self._epoch += 1
                pubsub.close()
                return False
        self._read_what_came()
        return True

    def _read_what_came(self) -> None:
        """Hand on what has arrived, where nobody reads the connection."""
        with self._lock:
            if self._reading or self._pubsub is None or self._closed:
                return
            self._reading = True
        try:
            while self._read_once(0.0):
                pass
        except REDIS_DOWN:
            pass  # read again later: redis-py makes the connection again
        except (ValueError, AttributeError, OSError):
            self._drop_broken()
        finally:
            with self._lock:
                self._reading = False
                self._pass_turn()

    def _drop_broken(self) -> None:
        with self._lock:
            pubsub, self._pubsub, self._tender = self._pubsub, None, None
            self._epoch += 1
        if pubsub is None or self._closed:
            return
        pubsub.close()
        try:
            if self.listeners():
                self.subscribe()  # a new connection, and a new tender for it
        except REDIS_DOWN:
            pass  # the next listener tries again
        self._tell_all(RESYNC)  # what was published meanwhile is lost: look again

    def _tell_all(self, message: Any) -> None:
        with self._lock:
            inboxes = [inbox for listeners in self._inboxes.values() for inbox in listeners]
        for inbox in inboxes:
            inbox.put(message)


def _tend(ref: weakref.ref[Dispatcher]) -> None:
    """The tender thread: holds its dispatcher weakly, so that a dropped client
    lets both go."""
    while True:
        time.sleep(READ_TIMEOUT)
        dispatcher = ref()
        if dispatcher is None or not dispatcher._tend_once():
            return
        del dispatcher


_dispatchers: weakref.WeakKeyDictionary[redis.Redis, dict[str, Dispatcher]] = \
    weakref.WeakKeyDictionary()
_dispatchers_lock = threading.Lock()


def dispatcher(client: redis.Redis, keys: Keys) -> Dispatcher:
    """The process's dispatcher for `client`'s server and `keys`' namespace."""
    with _dispatchers_lock:
        by_namespace = _dispatchers.setdefault(client, {})
        found = by_namespace.get(keys.prefix)
        if found is None or found.pid != os.getpid():
            # a forked child starts afresh: the parent's socket is not its own
            found = by_namespace[keys.prefix] = Dispatcher(client, keys)
            weakref.finalize(client, found.close)
        return found


def live_dispatcher(client: redis.Redis, keys: Keys) -> Dispatcher | None:
    """The process's dispatcher for `client` and `keys`, where one was made."""
    with _dispatchers_lock:
        found = _dispatchers.get(client, {}).get(keys.prefix)
    return found if found is not None and found.pid == os.getpid() else None


def close_dispatchers(client: redis.Redis) -> None:
    """Close the shared subscriptions of `client` (its owner closes it)."""
    with _dispatchers_lock:
        closing = list(_dispatchers.pop(client, {}).values())
    for each in closing:
        each.close()
