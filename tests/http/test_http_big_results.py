"""Big results (kept in a key of their own) over HTTP: streamed in chunks, with Range,
conditional requests, HEAD and types as for any result."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mlq import MLQ, defaults

from .conftest import ServerProcess

CHUNK = defaults.RESULT_CHUNK
SIZE = 3 * CHUNK + 4321  # a short last chunk
BLOB = random.Random(3).randbytes(SIZE)
TEXT = "ü" * (SIZE // 2)


def big(msg: Any, *args: Any) -> Any:
    return TEXT if msg == "text" else BLOB


LISTENERS = [big]


def _run(server: ServerProcess, worker: MLQ, msg: str) -> str:
    job_id = server.post_job(msg)
    worker.wait(job_id, timeout=20)
    return job_id


@pytest.fixture(scope="module")
def blob_id(server: ServerProcess, worker: MLQ) -> str:
    job_id = _run(server, worker, "blob")
    assert worker.client.exists(worker.keys.result(job_id))  # kept apart, not in the record
    return job_id


def test_a_big_result_is_served_whole_with_its_type(server: ServerProcess, worker: MLQ,
                                                    blob_id: str) -> None:
    for _ in range(2):  # the second time through the cache
        response = server.get(f"/jobs/{blob_id}/result")
        assert response.status_code == 200 and response.content == BLOB
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Length"] == str(SIZE)
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert server.get(f"/jobs/{blob_id}/result.mp3").headers["Content-Type"] == "audio/mpeg"
    text_id = _run(server, worker, "text")
    text = server.get(f"/jobs/{text_id}/result")
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.content.decode("utf-8") == TEXT
    html = server.get(f"/jobs/{text_id}/result.html")
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert html.headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=10-19", 10, 19),
    (f"bytes={CHUNK - 5}-{2 * CHUNK + 5}", CHUNK - 5, 2 * CHUNK + 5),  # across chunk edges
    (f"bytes={3 * CHUNK + 1}-", 3 * CHUNK + 1, SIZE - 1),  # inside the short last chunk
    ("bytes=-5", SIZE - 5, SIZE - 1),
])
def test_range_requests_read_only_what_they_cover(server: ServerProcess, blob_id: str,
                                                  spec: str, first: int, last: int) -> None:
    part = server.get(f"/jobs/{blob_id}/result.mp3", headers={"Range": spec})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert part.headers["Content-Length"] == str(last - first + 1)
    assert part.content == BLOB[first:last + 1]


def test_unsatisfiable_range(server: ServerProcess, blob_id: str) -> None:
    bad = server.get(f"/jobs/{blob_id}/result", headers={"Range": f"bytes={SIZE}-"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == f"bytes */{SIZE}"


def test_conditional_requests_and_head(server: ServerProcess, blob_id: str) -> None:
    first = server.get(f"/jobs/{blob_id}/result")
    etag = first.headers["ETag"]
    again = server.get(f"/jobs/{blob_id}/result", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    same = server.get(f"/jobs/{blob_id}/result", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (same.status_code, same.content) == (206, BLOB[:10])
    changed = server.get(f"/jobs/{blob_id}/result",
                         headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert (changed.status_code, len(changed.content)) == (200, SIZE)
    head = server.request("HEAD", f"/jobs/{blob_id}/result")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(SIZE)


def test_a_result_gone_before_it_is_sent_is_a_404(server: ServerProcess, worker: MLQ) -> None:
    job_id = _run(server, worker, "blob")
    worker.client.delete(worker.keys.result(job_id))
    response = server.get(f"/jobs/{job_id}/result")
    assert response.status_code == 404 and "error" in response.json()
