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
from mlq.callbacks import SIGNATURE_HEADER, CallbackSender
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
    import mlq.worker
    mlq.worker._warned_without_secret = False
    with caplog.at_level(logging.WARNING, logger="mlq.worker"):
        mlq.worker.Worker(q, "a")
        mlq.worker.Worker(q, "b")
    assert caplog.text.count("runs any function stored in Redis") == 1


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


def test_callbacks_are_signed_with_the_secret(callback_server: Any) -> None:
    seen: dict[str, str] = {}
    handler = callback_server.server.RequestHandlerClass
    original = handler.do_GET

    def capture(self: Any) -> None:
        seen.update(self.headers)
        original(self)

    handler.do_GET = capture
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
