"""The original README's HTTP calls, replayed as written (with real curl where it used curl).

The original's callback example had broken shell quoting (the URL ended the
single-quoted body); it is replayed with the quoting fixed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import requests

from mlq import MLQ

from .conftest import ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def multiply(msg: Any, *args: Any) -> Any:
    """The README's listener."""
    print("I got a message: " + str(msg))
    return msg["arg1"] * msg["arg2"]


LISTENERS = [multiply]


def curl(*args: str) -> str:
    """Run curl as the README does; returns stdout (raises on a transport error)."""
    done = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=20, check=True)
    return done.stdout.decode()


def test_readme_curl_walkthrough(server: ServerProcess, worker: MLQ) -> None:
    base = f"localhost:{server.port}"
    job_id = curl(f"{base}/jobs", "-X", "POST", "-d", '{"msg": {"arg1": 6, "arg2": 3}}',
                  "-H", "Content-Type: application/json")
    assert job_id.isdigit()
    worker.wait(job_id, timeout=10)
    assert curl(f"{base}/jobs/{job_id}/progress") == "[completed]"
    assert curl(f"{base}/jobs/{job_id}/short_result") == "18"
    assert curl(f"{base}/jobs/{job_id}/result") == "18"
    assert curl(f"{base}/jobs/{job_id}/result.mp3", "--output", "-") == "18"
    headers = curl("-D", "-", "-o", "/dev/null", f"{base}/jobs/{job_id}/result.mp3")
    assert "content-type: audio/mpeg" in headers.lower()


def test_readme_posts_without_content_type(server: ServerProcess, worker: MLQ) -> None:
    # the Python example: urllib3's request('POST', ..., body=json.dumps(...)), no header
    response = requests.post(f"{server.url}/jobs", data=json.dumps({"msg": {"arg1": 6, "arg2": 3}}),
                             timeout=10)
    assert "Content-Type" not in response.request.headers
    assert worker.wait(response.text, timeout=10)["result"] == 18
    # curl -d without -H sends application/x-www-form-urlencoded: still JSON to us
    job_id = curl(f"localhost:{server.port}/jobs", "-X", "POST", "-d", '{"msg": {"arg1": 2, "arg2": 5}}')
    assert worker.wait(job_id, timeout=10)["result"] == 10


def test_readme_callback(server: ServerProcess, worker: MLQ, callback_server: Any) -> None:
    base = f"localhost:{server.port}"
    good = curl(f"{base}/jobs", "-X", "POST", "-H", "Content-Type: application/json", "-d",
                json.dumps({"msg": {"arg1": 6, "arg2": 3}, "callback": callback_server.url}))
    calls = callback_server.wait_for(1)
    assert calls[0]["query"] == {"success": ["1"], "job_id": [good], "short_result": ["18"]}
    # the README's own example: msg "message" makes multiply fail, so success=0
    bad = curl(f"{base}/jobs", "-X", "POST", "-H", "Content-Type: application/json", "-d",
               '{"msg":"message", "callback":"' + callback_server.url + '"}')
    calls = callback_server.wait_for(2)
    assert calls[1]["query"]["success"] == ["0"] and calls[1]["query"]["job_id"] == [bad]


def test_readme_functions(server: ServerProcess, worker: MLQ) -> None:
    job_id = curl(f"localhost:{server.port}/jobs", "-X", "POST", "-H", "Content-Type: application/json",
                  "-d", '{"msg":"message", "functions":["my_func"]}')
    assert worker.wait(job_id, timeout=10)["error"] == "no listener named 'my_func'"
    assert curl(f"localhost:{server.port}/jobs/{job_id}/progress") == "[failed]"
