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


def held(msg: dict[str, Any], *args: Any) -> dict[str, Any]:
    """`record`, except that a first attempt waits until the file msg['gate'] exists
    (at most 60 s): the test decides when a cut-off worker's first attempt ends.
    Appends `<job id> <pid> <attempt> done` to msg['log'] when it returns."""
    job = args[0]["full_message"]
    result = record({**msg, "sleep": 0}, *args)
    if job["attempt"] == 1 and msg.get("gate"):
        deadline = time.monotonic() + 60
        while not os.path.exists(msg["gate"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    fd = os.open(msg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job['id']} {os.getpid()} {job['attempt']} done\n".encode())
    finally:
        os.close(fd)
    return {**result, "attempt": job["attempt"]}
