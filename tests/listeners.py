"""Listener functions the tests' worker processes import (spawned children import by name)."""

from __future__ import annotations

import os
import time
from typing import Any

from mlq import listener


def double(msg: Any, *args: Any) -> Any:
    return msg["my_data"] * 2 if isinstance(msg, dict) else msg * 2


def sleepy(msg: dict[str, Any], *args: Any) -> dict[str, Any]:
    """Sleeps msg['sleep'] seconds; appends one line per execution to msg['log'] if given."""
    if msg.get("log"):
        with open(msg["log"], "a") as handle:
            handle.write(f"{args[0]['full_message']['id']} {os.getpid()}\n")
    time.sleep(msg.get("sleep", 0))
    return {"pid": os.getpid(), "retries": args[0]["full_message"]["retries"]}


def crash(msg: Any, *args: Any) -> None:
    raise RuntimeError(f"bad input {msg!r}")


def _load_model() -> dict[str, Any]:
    """Stands for an expensive model load; counts how often it runs."""
    import redis as _redis
    url = os.environ["MLQ_TEST_REDIS_URL"]
    _redis.Redis.from_url(url).incr(os.environ["MLQ_TEST_COUNTER"])
    return {"weights": 3, "pid": os.getpid()}


def _unload(state: dict[str, Any]) -> None:
    import redis as _redis
    _redis.Redis.from_url(os.environ["MLQ_TEST_REDIS_URL"]).incr(
        os.environ["MLQ_TEST_COUNTER"] + ":teardown")


def predict(msg: int, *args: Any) -> int:
    return msg * args[0]["state"]["weights"]


def which_gpu(msg: Any, *args: Any) -> str:
    # as long as a small model's call: an idle child is woken for the next job
    # instead of one child running every instant job back to back
    time.sleep(0.05)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def hog(msg: Any, *args: Any) -> None:
    time.sleep(30)


def _attach_hooks() -> None:
    from mlq import listener
    listener(predict, setup=_load_model, teardown=_unload)


_attach_hooks()


def slow_call(seconds: float) -> str:
    """A submitted function's body in a spawned child (tests of cancel)."""
    time.sleep(seconds)
    return "finished"


@listener(batch_size=32, batch_wait=1.0)
def embed_fits_8(msgs: list[Any], *args: Any) -> list[Any]:
    """A batching model that runs out of memory above 8 items (batching.py splits)."""
    if len(msgs) > 8:
        raise MemoryError(f"{len(msgs)} items do not fit")
    return [m * 2 for m in msgs]
