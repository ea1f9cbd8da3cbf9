"""Listener functions the tests' worker processes import (spawned children import by name)."""

from __future__ import annotations

import os
import time
from typing import Any


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
