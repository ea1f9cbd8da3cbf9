"""A Redis reached through a unix socket (`unix://` URL), which mlq.connection
lists among the URLs it takes: same host, no TCP port to expose."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlq import MLQ
from mlq.embedded import find_server_binary
from tests.conftest import wait_until


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A server listening on a unix socket only (port 0: no TCP at all)."""
    # a unix socket path must stay under 108 bytes: not under pytest's long tmp_path
    directory = Path(tempfile.mkdtemp(prefix="mlq-unix-"))
    path = directory / "redis.sock"
    process = subprocess.Popen(
        [find_server_binary(), "--port", "0", "--unixsocket", str(path), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            assert process.poll() is None, "the server exited"
            return path.exists()

        wait_until(listening, 10, "the server's unix socket", interval=0.02)
        yield path
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_unix_socket_url_posts_and_reads(socket_path: Path) -> None:
    q = MLQ("unix", redis_url=f"unix://{socket_path}?db=0")
    job_id = q.post({"x": 1})
    assert q.get_job(job_id)["status"] == "queued"
