"""Hostile input to the `controller` commands (the CLI half of hostile input).

Ids that try path tricks, negative numbers, 30-digit numbers, non-ASCII
digits and non-UTF-8 bytes (given as raw argv bytes, which Python decodes with
surrogateescape); messages, callbacks, function names and time limits that
cannot be stored. Pass: exit 2 with one clear line on stderr and no
traceback, and nothing written to Redis (the whole keyspace is compared,
value by value, before and after). Malformed JSON is not an error (SPEC §8:
MSG that is not valid JSON is sent as a string), so it must arrive unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from tests.faults.conftest import ROOT, base_env

NS = "hostile"
THIRTY = "1" * 30
#: Deeper than Python's json module can parse (it raises RecursionError, not ValueError),
#: and short enough for one argv string (Linux allows 128 KiB).
DEEP = "[" * 50_000 + "]" * 50_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("redis-hostile")) as srv:
        MLQ(NS, redis_url=srv.url).post({"existing": True})  # job 1: queued, not dead
        yield srv


def keyspace(url: str) -> dict[bytes, Any]:
    """Every key of the server with its serialized value (DUMP) and whether it expires
    (not the remaining time, which runs down between two looks)."""
    client = redis.Redis.from_url(url)
    try:
        return {key: (client.dump(key), client.pttl(key) > 0)
                for key in client.scan_iter(count=1000)}
    finally:
        client.close()


def run(url: str, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`python -m controller ARGS` with this server and namespace; the connection
    options go right after the command words (before any `--`)."""
    words = 2 if args[0] == "deadletter" else 1
    argv = [*args[:words], "--redis_url", url, "--namespace", NS, *args[words:]]
    return subprocess.run([sys.executable, "-m", "controller", *map(os.fsencode, argv)],
                          cwd=ROOT, env=base_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, check=False)


REJECTED = [
    pytest.param(("status", "../../etc/passwd"), "no job", id="status-path"),
    pytest.param(("status", "--", "-1"), "no job", id="status-negative"),
    pytest.param(("status", "-1"), "No such option", id="status-negative-as-option"),
    pytest.param(("status", THIRTY), "no job", id="status-30-digits"),
    pytest.param(("status", "\uff11\uff12"), "no job", id="status-fullwidth-digits"),
    pytest.param(("status", b"\xff\xfe"), "no job", id="status-non-utf8"),
    pytest.param(("status", "1/../1"), "no job", id="status-path-after-digit"),
    pytest.param(("result", "../../etc/passwd"), "no job", id="result-path"),
    pytest.param(("result", "--", "-1"), "no job", id="result-negative"),
    pytest.param(("result", THIRTY), "no job", id="result-30-digits"),
    pytest.param(("result", b"\xc3\x28"), "no job", id="result-non-utf8"),
    pytest.param(("deadletter", "requeue", "../../etc/passwd"), "no job", id="requeue-path"),
    pytest.param(("deadletter", "requeue", "--", "-1"), "no job", id="requeue-negative"),
    pytest.param(("deadletter", "requeue", THIRTY), "no job", id="requeue-30-digits"),
    pytest.param(("deadletter", "requeue", "1"), "not a dead letter", id="requeue-not-dead"),
    pytest.param(("deadletter", "purge", THIRTY, "--yes"), "no job", id="purge-30-digits"),
    pytest.param(("deadletter", "purge", "../../etc/passwd", "--yes"), "no job", id="purge-path"),
    pytest.param(("post", b'\xff\xfe{"a": 1}'), "", id="post-non-utf8"),
    pytest.param(("post", "-1"), "No such option", id="post-negative-as-option"),
    pytest.param(("post", "x", "--callback", "javascript:alert(1)"), "callback", id="post-js-callback"),
    pytest.param(("post", "x", "--callback", "../../etc/passwd"), "callback", id="post-path-callback"),
    pytest.param(("post", "x", "--callback", b"http://\xff/"), "callback",
                 id="post-non-utf8-callback"),
    pytest.param(("post", "x", "--functions", b"\xff"), "",
                 id="post-non-utf8-function"),
    pytest.param(("post", "x", "--timeout", "nan"), "timeout", id="post-nan-timeout"),
    pytest.param(("post", "x", "--timeout", "inf"), "timeout", id="post-inf-timeout"),
    pytest.param(("post", "x", "--timeout", "-1"), "timeout", id="post-negative-timeout"),
    pytest.param(("post", DEEP), "", id="post-too-deep"),
    pytest.param(("post", "x", "--namespace", b"\xff"), "", id="post-non-utf8-namespace"),
    pytest.param(("status", "--redis_url", b"redis://\xff:1/0"), "", id="status-non-utf8-url"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "says"), REJECTED)  # says: a word the error line must hold
def test_rejected_cleanly_and_nothing_written(server: EmbeddedServer, args: tuple[Any, ...],
                                              says: str) -> None:
    before = keyspace(server.url)
    done = run(server.url, *args)
    err = done.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert done.returncode == 2, (done.returncode, done.stdout, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: ") and says in lines[-1], err
    assert done.stdout == b""
    assert keyspace(server.url) == before, "a rejected command wrote to Redis"


ACCEPTED = [
    pytest.param('"unterminated', '"unterminated', id="unterminated-string"),
    pytest.param("../../etc/passwd", "../../etc/passwd", id="path"),
]
#: Text that opens like a JSON object or array but does not parse: a typo, refused
#: unless --raw says the text is meant.
REFUSED = [
    pytest.param('{"a": 1', id="unclosed-object"),
    pytest.param("[1, 2", id="unclosed-array"),
    pytest.param("{'a': 1}", id="single-quotes"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("text", "msg"), ACCEPTED)
def test_malformed_json_is_sent_as_the_string(server: EmbeddedServer, text: str,
                                              msg: Any) -> None:
    done = run(server.url, "post", text)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    job_id = done.stdout.decode().strip()
    assert job_id.isdigit()
    assert MLQ(NS, redis_url=server.url).get_job(job_id)["msg"] == msg


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", REFUSED)
def test_broken_json_is_refused_unless_raw(server: EmbeddedServer, text: str) -> None:
    before = MLQ(NS, redis_url=server.url).stats()["posted"]
    refused = run(server.url, "post", text)
    assert refused.returncode == 2
    assert "not valid JSON" in refused.stderr.decode(errors="replace")
    assert MLQ(NS, redis_url=server.url).stats()["posted"] == before  # nothing posted
    raw = run(server.url, "post", "--raw", text)
    assert raw.returncode == 0, raw.stderr.decode(errors="replace")
    assert MLQ(NS, redis_url=server.url).get_job(raw.stdout.decode().strip())["msg"] == text


@pytest.mark.timeout(60)
def test_negative_number_after_double_dash_is_json(server: EmbeddedServer) -> None:
    done = run(server.url, "post", "--", "-1")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert MLQ(NS, redis_url=server.url).get_job(done.stdout.decode().strip())["msg"] == -1
