"""HTTP load: wrk when it is installed (Debian: apt-get install wrk), else a Python
client with keep-alive connections in processes of their own. Both servers of a
comparison always get the same generator with the same settings."""

from __future__ import annotations

import http.client
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    content_type: str = ""


def tool() -> str:
    """Which generator this machine uses, as the report names it."""
    return "wrk" if shutil.which("wrk") else "python keep-alive client"


def requests_per_second(port: int, request: Request, connections: int, seconds: float) -> float:
    """Keep-alive requests/s over `seconds` (whole seconds: wrk takes no fractions)."""
    if shutil.which("wrk"):
        return _wrk(port, request, connections, seconds)
    return _python(port, request, connections, seconds)


def _wrk(port: int, request: Request, connections: int, seconds: float) -> float:
    # wrk sets the method, body and headers from a Lua script
    script = (f'wrk.method = "{request.method}"\n'
              f'wrk.body = {_lua_string(request.body)}\n')
    if request.content_type:
        script += f'wrk.headers["Content-Type"] = "{request.content_type}"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s", "-s", handle.name,
             f"http://127.0.0.1:{port}{request.path}"],
            capture_output=True, text=True, timeout=seconds + 30)
    finally:
        Path(handle.name).unlink()
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    if bad or done.returncode != 0:
        raise RuntimeError(f"wrk: {bad.group(0) if bad else (done.stderr + done.stdout).strip()}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no rate:\n{done.stdout}")
    return float(match.group(1))


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def _client(port: int, request: Request, seconds: float) -> int:
    """One keep-alive connection in a loop; the 2xx answers it got."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request(request.method, request.path, body=request.body or None, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if not 200 <= answer.status < 300:
            raise RuntimeError(f"{request.method} {request.path}: HTTP {answer.status}")
        count += 1
    conn.close()
    return count


def _python(port: int, request: Request, connections: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(connections, mp_context=context) as pool:
        counts = pool.map(_client, [port] * connections, [request] * connections,
                          [seconds] * connections)
        return sum(counts) / seconds
