"""Running the library's synchronous read functions over an asyncio client.

A function such as record.read_record takes a redis-py client and calls it. To
give the asyncio client (aio.py) the very same answers without a second copy
of each function, `replayed` runs it against a stand-in client: each command
gets the answer already fetched for it, and the first command without one
stops the run; that command is then awaited on the real client, and the
function runs again from the start with one more answer. The functions read
one to three things, so a run or two more costs far less than a round trip.

Only for functions that send the same commands each time they are given the
same answers, and that leave their arguments unchanged (a second run must see
what the first saw).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

#: One command: the client method's name and its arguments; a pipeline is
#: ("pipeline", (transaction, commands), {}).
Command = tuple[str, tuple[Any, ...], dict[str, Any]]


class _Unanswered(BaseException):
    """Stops a run at its first command without an answer (a BaseException, so that
    no `except Exception` of the function stops it)."""


class _Refused(NamedTuple):
    """An error reply, raised again where the function sent the command."""

    error: redis.ResponseError


class _StandIn:
    """A redis-py client in appearance: each command returns its recorded answer."""

    def __init__(self, answers: list[Any]) -> None:
        self._answers = answers
        self._used = 0
        self.unanswered: Command | None = None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.answer((name, args, kwargs))

    def pipeline(self, transaction: bool = True) -> _StandInPipeline:
        return _StandInPipeline(self, transaction)

    def answer(self, command: Command) -> Any:
        if self._used == len(self._answers):
            self.unanswered = command
            raise _Unanswered
        answer = self._answers[self._used]
        self._used += 1
        if isinstance(answer, _Refused):
            raise answer.error
        return answer


class _StandInPipeline:
    """A pipeline of the stand-in: its commands go out together on execute()."""

    def __init__(self, stand_in: _StandIn, transaction: bool) -> None:
        self._stand_in = stand_in
        self._transaction = transaction
        self._commands: list[Command] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def queued(*args: Any, **kwargs: Any) -> _StandInPipeline:
            self._commands.append((name, args, kwargs))
            return self
        return queued

    def execute(self) -> Any:
        return self._stand_in.answer(("pipeline", (self._transaction, tuple(self._commands)), {}))

    def __enter__(self) -> _StandInPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._commands = []


async def replayed(client: redis.asyncio.Redis, function: Callable[..., Any],
                   *args: Any) -> Any:
    """`function(client, *args)`'s return value (or exception), its commands
    awaited on the asyncio `client`."""
    answers: list[Any] = []
    while True:
        stand_in = _StandIn(answers)
        try:
            return function(stand_in, *args)
        except _Unanswered:
            assert stand_in.unanswered is not None
        answers.append(await _send(client, stand_in.unanswered))


async def _send(client: redis.asyncio.Redis, command: Command) -> Any:
    name, args, kwargs = command
    try:
        if name != "pipeline":
            return await getattr(client, name)(*args, **kwargs)
        transaction, commands = args
        async with client.pipeline(transaction=transaction) as pipe:
            for queued_name, queued_args, queued_kwargs in commands:
                getattr(pipe, queued_name)(*queued_args, **queued_kwargs)
            return await pipe.execute()
    except redis.ResponseError as exc:
        return _Refused(exc)


def evalsha(client: Any, source: str, keys: list[Any], args: list[Any]) -> Any:
    """A script's reply, as redis-py's Script gives it (loaded when the server
    lacks it), for the stand-in client of a replayed function."""
    sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        client.script_load(source)
        return client.evalsha(sha, len(keys), *keys, *args)
