"""The original quick start, word for word, as two real scripts in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer, port_open
from tests.conftest import fixed_ports

PRODUCER = """\
import time
from mlq.queue import MLQ

# Create MLQ: namespace, redis host, redis port, redis db
mlq = MLQ('example_app', 'localhost', 6379, 0)

job_id = mlq.post({'my_data': 1234})
result = None
while not result:
    job = mlq.get_job(job_id)
    result = job['result']
print(result)
"""

WORKER = """\
import asyncio
from mlq.queue import MLQ

mlq = MLQ('example_app', 'localhost', 6379, 0)

def simple_multiply(params_dict, *args):
    return params_dict['my_data'] * 2

async def main():
    print("Running, waiting for messages.", flush=True)
    mlq.create_listener(simple_multiply)

if __name__ == '__main__':
    asyncio.run(main())
"""


@pytest.fixture
def port_6379(tmp_path: Path) -> Iterator[int]:
    """The quick start names localhost:6379: give it a private server there when the port
    is free; otherwise the scripts are pointed at a private server on another port."""
    port = 6379 if not port_open("127.0.0.1", 6379) else None
    with EmbeddedServer(port=port, data_dir=tmp_path / "redis") as server:
        yield server.port


@fixed_ports
def test_original_quick_start(tmp_path: Path, port_6379: int) -> None:
    root = Path(__file__).resolve().parent.parent
    producer, worker = tmp_path / "producer.py", tmp_path / "worker.py"
    producer.write_text(PRODUCER.replace("6379", str(port_6379)))
    worker.write_text(WORKER.replace("6379", str(port_6379)))
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    consumer = subprocess.Popen([sys.executable, str(worker)], stdout=subprocess.PIPE,
                                text=True, env=env, cwd=tmp_path)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().startswith("Running")
        # main() has returned by now; the process keeps consuming
        for _ in range(2):
            done = subprocess.run([sys.executable, str(producer)], capture_output=True,
                                  text=True, env=env, cwd=tmp_path, timeout=30)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "2468"
        assert consumer.poll() is None
    finally:
        consumer.terminate()
        consumer.wait(10)
        if consumer.stdout is not None:
            consumer.stdout.close()
        MLQ("example_app", "localhost", port_6379, 0).clear_all()
