"""The pure rules: progress text, outcome splitting, callback URLs, signatures."""

from __future__ import annotations

import pytest

from mlq.callbacks import callback_url
from mlq.errors import SignatureError
from mlq.job import progress_text, runtime_bucket, signal_reason, split_outcome
from mlq.signing import seal, unseal


@pytest.mark.parametrize("value,text", [
    (None, "[queued; not started]"), (0, "[started]"), (100, "[completed]"),
    (-1, "[failed]"), (50, "50"), ("half", "half"), (12.5, "12.5"),
])
def test_progress_text(value: object, text: str) -> None:
    assert progress_text(value) == text


@pytest.mark.parametrize("value,result,short", [
    (("cat", b"\x89PNG"), b"\x89PNG", "cat"),
    ((None, {"a": 1}), {"a": 1}, None),
    ((3, "long"), "long", "3"),
    ("text", "text", "text"),
    (7, 7, "7"),
    (2.5, 2.5, "2.5"),
    (True, True, "True"),
    (None, None, None),
    (b"raw", b"raw", None),
    ({"b": [1, 2]}, {"b": [1, 2]}, '{"b":[1,2]}'),
    ([1, "x"], [1, "x"], '[1,"x"]'),
])
def test_split_outcome(value: object, result: object, short: object) -> None:
    assert split_outcome(value) == (result, short)


def test_callback_url_appends_to_existing_query() -> None:
    url = callback_url("http://h/cb?token=a b", True, "53", "a widget&more")
    assert url == "http://h/cb?token=a b&success=1&job_id=53&short_result=a+widget%26more"
    assert callback_url("http://h/cb", False, "7", None) == "http://h/cb?success=0&job_id=7&short_result="


def test_seal_and_unseal() -> None:
    assert unseal(seal(b"code", None), None) == b"code"
    signed = seal(b"code", "s3cret")
    assert unseal(signed, "s3cret") == b"code"
    with pytest.raises(SignatureError):
        unseal(signed, "other")
    with pytest.raises(SignatureError):
        unseal(seal(b"code", None), "s3cret")
    tampered = signed[:-1] + b"X"
    with pytest.raises(SignatureError):
        unseal(tampered, "s3cret")


def test_reasons_and_buckets() -> None:
    assert signal_reason(-9) == "killed by signal 9"
    assert signal_reason(3) == "worker exited with code 3"
    assert runtime_bucket(0.001) == "runtime_le_0.005"
    assert runtime_bucket(1e9) == "runtime_le_inf"
