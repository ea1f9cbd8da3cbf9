"""Listeners the fault tests' worker processes import (`--import tests.faults.listeners:NAME`)."""

from __future__ import annotations

import os
import time
from typing import Any


def record(msg: dict[str, Any], *args: Any) -> dict[str, Any]:
    """Append `<job id> <pid>` to msg['log'], then sleep msg['sleep'] seconds.

    The line is written before the work, so an execution that is killed halfway
    still shows; one write(2) on an O_APPEND file keeps lines from interleaving.
    The result carries the pid, so a test knows which execution counted.
    """
    job_id = args[0]["full_message"]["id"]
    fd = os.open(msg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(float(msg.get("sleep", 0)))
    return {"pid": os.getpid(), "token": msg.get("token")}


def quick(msg: Any, *args: Any) -> Any:
    """Returns its message: a job that takes no time."""
    return msg
