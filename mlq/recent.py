"""The latest messages of a process's shared subscription (dispatch.py), kept
for a wait that starts just after its post: its job may have started, or even
ended, in between, and another reader in the process may have been listening
to it then (Dispatcher.mark)."""

from __future__ import annotations

import collections
from typing import Any

#: At most this many messages are kept, and this many bytes (an event may carry
#: a record).
RECENT_KEPT = 4096
RECENT_BYTES = 8 << 20


class RecentMessages:
    """Messages numbered as they arrived, the oldest dropped first."""

    def __init__(self) -> None:
        #: the number of the last message dropped: later ones are all kept (or
        #: were taken by a listen)
        self.lost_upto = 0
        self.by_channel: dict[bytes, list[tuple[int, Any]]] = {}
        self._order: collections.deque[tuple[int, bytes, int]] = collections.deque()
        self._bytes = 0

    def keep(self, number: int, channel: bytes, data: Any) -> None:
        size = len(data) if isinstance(data, bytes) else 0
        while self._order and (len(self._order) >= RECENT_KEPT
                               or self._bytes + size > RECENT_BYTES):
            self.lost_upto, oldest, dropped = self._order.popleft()
            self._bytes -= dropped
            kept = self.by_channel.get(oldest)
            if kept and kept[0][0] == self.lost_upto:  # (a listen may have taken it)
                kept.pop(0)
                if not kept:
                    del self.by_channel[oldest]
        self._order.append((number, channel, size))
        self._bytes += size
        self.by_channel.setdefault(channel, []).append((number, data))

    def knows_all_since(self, number: int) -> bool:
        return self.lost_upto <= number

    def take_latest(self, channel: bytes, since: int) -> list[Any]:
        """The latest message of `channel` after message `since`, if any, no longer
        kept: a job's events are its states, and an outcome followed by a requeue
        is an outcome no more."""
        return [data for number, data in self.by_channel.pop(channel, ())
                if number > since][-1:]
