"""Signed code, callback policy and size limits."""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from mlq import MLQ, InvalidMessage, ListenerError
from mlq.callbacks import CallbackSender, forbidden_address
from mlq.signing import SIGNATURE_HEADER
from mlq.signing import seal


class _Plant:
    """Unpickling this writes a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.write_text, (Path(self.path), "pwned"))


def test_forged_pickle_is_never_executed(redis_url: str, namespace: str, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "pwned"
    q = MLQ(namespace, redis_url=redis_url, secret="s3cret")
    try:
        forged = pickle.dumps(_Plant(str(marker)))
        # written straight into Redis, unsigned and then with a wrong signature
        q.scripts.register("evil", seal(forged, None))
        q.scripts.register("evil2", seal(forged, "not-the-secret"))

        def fine(msg: Any, *args: Any) -> str:
            return "fine"

        with caplog.at_level(logging.ERROR, logger="mlq.listeners"):
            q.create_listener(fine)
            assert q.wait(q.post("x", functions=["fine"]), 10)["result"] == "fine"
            failed = q.wait(q.post("x", functions=["evil"]), 10)
            failed2 = q.wait(q.post("x", functions=["evil2"]), 10)
        assert failed["status"] == "failed" and failed["error"] == "function 'evil' is not signed"
        assert failed2["error"] == "function 'evil2' is not signed"
        assert not marker.exists()
        assert "'evil' skipped" in caplog.text
    finally:
        q.shutdown(10)
        q.clear_all()


def test_signed_functions_run(redis_url: str, namespace: str) -> None:
    producer = MLQ(namespace, redis_url=redis_url, secret="s3cret")
    worker = MLQ(namespace, redis_url=redis_url, secret="s3cret")
    try:
        def triple(msg: int, *args: Any) -> int:
            return msg * 3

        producer.register_listener(cloudpickle.dumps(triple))
        worker.create_listener()
        assert worker.wait(producer.post(2), 10)["result"] == 6
    finally:
        worker.shutdown(10)
        worker.clear_all()


def test_worker_without_secret_warns_once(q: MLQ, caplog: pytest.LogCaptureFixture) -> None:
    import mlq.listeners
    import mlq.worker
    mlq.listeners._warned_without_secret = False
    with caplog.at_level(logging.WARNING, logger="mlq.worker"):
        mlq.worker.Worker(q, "a")
        mlq.worker.Worker(q, "b")
    assert caplog.text.count("runs any function stored in Redis") == 1


def test_the_warning_is_for_a_redis_that_others_can_write_to(caplog: pytest.LogCaptureFixture) -> None:
    import redis

    import mlq.listeners
    # clients are only built here: redis-py connects on the first command, and none is sent
    assert mlq.listeners.writable_from_elsewhere(redis.Redis(host="10.1.2.3", password="x"))
    assert mlq.listeners.writable_from_elsewhere(redis.Redis(host="127.0.0.1"))
    assert not mlq.listeners.writable_from_elsewhere(redis.Redis(host="127.0.0.1", password="x"))
    assert not mlq.listeners.writable_from_elsewhere(redis.Redis(host="::1", password="x"))
    assert not mlq.listeners.writable_from_elsewhere(redis.Redis(unix_socket_path="/run/r.sock"))
    mlq.listeners._warned_without_secret = False
    with caplog.at_level(logging.DEBUG, logger="mlq.worker"):
        mlq.listeners.warn_once_without_secret(None, redis.Redis(host="localhost", password="x"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_callback_urls_are_http_only(q: MLQ) -> None:
    for bad in ("file:///etc/passwd", "gopher://x/", "ftp://h/x", "/relative", "http://"):
        with pytest.raises(InvalidMessage):
            q.post("m", callback=bad)
    assert q.job_count() == 0


def test_link_local_and_allowlist_are_refused(callback_server: Any) -> None:
    sender = CallbackSender(attempts=1)
    assert sender.deliver("http://169.254.169.254/latest/meta-data/?success=1") is False
    allowlisted = CallbackSender(attempts=1, allow_hosts=["example.invalid"])
    assert allowlisted.deliver(callback_server.url + "?success=1") is False
    assert callback_server.requests == []
    assert CallbackSender(attempts=1, allow_hosts=["127.0.0.1"]).deliver(
        callback_server.url + "?success=1") is True


def capture_headers(callback_server: Any) -> dict[str, str]:
    """The headers of the requests the callback server receives from now on."""
    seen: dict[str, str] = {}
    handler = callback_server.server.RequestHandlerClass
    original = handler.do_GET

    def capture(self: Any) -> None:
        seen.update(self.headers)
        original(self)

    handler.do_GET = capture
    return seen


def test_callbacks_are_signed_with_the_secret(callback_server: Any) -> None:
    seen = capture_headers(callback_server)
    url = callback_server.url + "?success=1&job_id=1&short_result="
    assert CallbackSender(attempts=1, secret="k").deliver(url) is True
    expected = hmac.new(b"k", url.encode(), hashlib.sha256).hexdigest()
    assert seen[SIGNATURE_HEADER] == "sha256=" + expected


def test_size_limits(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, max_message_size=1000, max_result_size=1000,
            max_function_size=200, result_ttl=1)
    try:
        with pytest.raises(InvalidMessage, match="exceeds the limit of 1000 bytes"):
            q.post("x" * 2000)
        assert q.job_count() == 0

        def huge(msg: Any, *args: Any) -> bytes:
            return b"x" * 5000

        with pytest.raises(ListenerError, match="exceeds the limit of 200 bytes"):
            q.register_listener(cloudpickle.dumps(huge) + b"\0" * 300)
        q.max_function_size = None
        q.registry.max_function_size = None
        q.create_listener(huge)
        record = q.wait(q.post("small"), 10)
        assert record["status"] == "failed"
        assert record["error"] == "result cannot be stored: result of 5003 bytes exceeds the limit of 1000 bytes"
        assert 0 < q.client.pttl(q.keys.job(record["id"])) <= 1000  # result TTL
    finally:
        q.shutdown(10)
        q.clear_all()


@pytest.mark.parametrize("address", [
    "169.254.169.254", "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::", "fd00:ec2::254", "100.100.100.200", "fe80::1", "169.254.0.1"])
def test_the_guard_knows_every_form_of_the_metadata_addresses(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "8.8.8.8", "::ffff:127.0.0.1"])
def test_the_guard_lets_other_addresses_through(address: str) -> None:
    assert not forbidden_address(address)  # a check of the text alone: nothing is sent


class StubResolver:
    """Names resolve to what the test says; every call is counted."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_callback_goes_to_the_checked_address_with_its_own_host_name(
        callback_server: Any) -> None:
    port = callback_server.server.server_address[1]
    seen = capture_headers(callback_server)
    resolver = StubResolver(["127.0.0.1"])
    sender = CallbackSender(attempts=1, resolver=resolver)
    assert sender.deliver(f"http://hooks.example:{port}/hook?success=1") is True
    assert seen["Host"] == f"hooks.example:{port}"
    assert callback_server.requests[0]["query"] == {"success": ["1"]}


@pytest.mark.parametrize("answer", [["127.0.0.1", "::ffff:169.254.169.254"],
                                    ["64:ff9b::a9fe:a9fe"], ["100.100.100.200"]])
def test_a_name_that_resolves_to_metadata_is_refused(callback_server: Any,
                                                     answer: list[str]) -> None:
    port = callback_server.server.server_address[1]
    sender = CallbackSender(attempts=3, resolver=StubResolver(answer), sleep=lambda s: None)
    assert sender.deliver(f"http://rebound.example:{port}/hook") is False
    assert callback_server.requests == []


def test_each_attempt_resolves_again_and_a_failed_lookup_is_a_failed_attempt(
        callback_server: Any) -> None:
    port = callback_server.server.server_address[1]
    # the first lookup fails, the second rebinds to metadata: refused, nothing sent
    rebinding = StubResolver(OSError("no such name"), ["169.254.169.254"])
    sender = CallbackSender(attempts=3, resolver=rebinding, sleep=lambda s: None)
    assert sender.deliver(f"http://flaky.example:{port}/hook") is False
    assert rebinding.calls == 2 and callback_server.requests == []
    # a name that never resolves is given up after every attempt failed
    missing = StubResolver(OSError("no such name"))
    sender = CallbackSender(attempts=3, resolver=missing, sleep=lambda s: None)
    assert sender.deliver(f"http://missing.example:{port}/hook") is False
    assert missing.calls == 3
    # a server answering 500 three times: three lookups, three requests
    callback_server.status = 500
    counting = StubResolver(["127.0.0.1"])
    sender = CallbackSender(attempts=3, resolver=counting, sleep=lambda s: None)
    assert sender.deliver(f"http://hooks.example:{port}/hook") is False
    assert counting.calls == 3 and len(callback_server.requests) == 3
