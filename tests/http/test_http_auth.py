"""Bearer token, signed result links and the bind policy (SPEC §9)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from controller.app import create_app
from controller.auth import sign_link
from controller.server import BindRefused, check_bind, is_loopback
from mlq import MLQ, MLQError

from .conftest import JSON, TOKEN, ServerProcess, tiny_png

PNG = tiny_png()


def picture(msg: Any, *args: Any) -> bytes:
    return PNG


LISTENERS = [picture]

PROTECTED = [("GET", "/jobs/count"), ("POST", "/jobs"), ("GET", "/jobs/1"),
             ("GET", "/jobs/1/progress"), ("GET", "/jobs/1/short_result"),
             ("GET", "/jobs/1/result"), ("GET", "/jobs/1/result.png"), ("GET", "/jobs/1/events"),
             ("GET", "/jobs/1/link"), ("GET", "/consumer"), ("POST", "/consumer"),
             ("DELETE", "/consumer"), ("GET", "/deadletter"), ("POST", "/deadletter/requeue"),
             ("POST", "/deadletter/1/requeue"), ("DELETE", "/deadletter"),
             ("DELETE", "/deadletter/1"), ("GET", "/metrics"), ("GET", "/openapi.json"),
             ("GET", "/no/such/route")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dXNlcjpwYXNz", f"Token {TOKEN}",
                                    "Bearer", f"Bearer {TOKEN}x"])
def test_every_route_but_healthz_needs_the_token(token_server: ServerProcess, method: str,
                                                 path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = token_server.request(method, path, auth=False, headers=headers, data=b'{"msg": 1}')
    assert response.status_code == 401
    assert response.json()["error"]
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_healthz_needs_no_token(token_server: ServerProcess) -> None:
    assert token_server.get("/healthz", auth=False).text == "ok"


def test_the_token_opens_the_routes(token_server: ServerProcess, worker: MLQ) -> None:
    job_id = token_server.post_job("x")
    worker.wait(job_id, timeout=10)
    assert token_server.get(f"/jobs/{job_id}/result.png").content == PNG
    assert token_server.get("/metrics").status_code == 200


def test_auth_is_checked_before_the_body_is_read(token_server: ServerProcess, tmp_path: Any) -> None:
    trap = tmp_path / "pwned"
    body = json.dumps({"py/reduce": [{"py/function": "builtins.open"},
                                     {"py/tuple": [str(trap), "w"]}]})
    response = token_server.post("/consumer", auth=False, data=body, headers=JSON)
    assert response.status_code == 401
    garbage = token_server.post("/jobs", auth=False, data=b"not json" * 1024)
    assert garbage.status_code == 401  # not 400: the body was never parsed
    assert not trap.exists()


# -- signed links ---------------------------------------------------------------------------
@pytest.fixture
def finished(token_server: ServerProcess, worker: MLQ) -> str:
    job_id = token_server.post_job("x")
    worker.wait(job_id, timeout=10)
    return job_id


def _link(server: ServerProcess, job_id: str, ttl: int = 60) -> str:
    response = server.get(f"/jobs/{job_id}/link?ttl={ttl}")
    assert response.status_code == 200
    assert abs(response.json()["expires"] - (time.time() + ttl)) < 5
    return str(response.json()["url"])


def test_signed_link_opens_the_result_without_the_token(token_server: ServerProcess,
                                                        finished: str) -> None:
    url = _link(token_server, finished)
    response = requests.get(token_server.url + url, timeout=10)
    assert (response.status_code, response.content) == (200, PNG)
    path, _, query = url.partition("?")
    typed = requests.get(f"{token_server.url}{path}.png?{query}", timeout=10)
    assert typed.headers["Content-Type"] == "image/png" and typed.content == PNG
    ranged = requests.get(token_server.url + url, headers={"Range": "bytes=0-3"}, timeout=10)
    assert (ranged.status_code, ranged.content) == (206, PNG[:4])


def test_signed_link_opens_nothing_else(token_server: ServerProcess, finished: str) -> None:
    query = urlsplit(_link(token_server, finished)).query
    for path in ("", "/short_result", "/progress", "/events", "/link"):
        response = requests.get(f"{token_server.url}/jobs/{finished}{path}?{query}", timeout=10)
        assert response.status_code == 401, path


def _tampered(url: str, **changes: str) -> str:
    path, _, query = url.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params.update(changes)
    return f"{path}?{urlencode(params)}"


def test_bad_links_get_401(token_server: ServerProcess, finished: str) -> None:
    url = _link(token_server, finished)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    other = token_server.post_job("other", queue="held")
    bad = [
        _tampered(url, sig=("0" if sig[0] != "0" else "1") + sig[1:]),  # tampered signature
        _tampered(url, expires=str(expires + 1)),  # tampered expiry
        _tampered(url, sig="é" * 64), _tampered(url, sig="short"), _tampered(url, expires="soon"),
        url.split("&sig=")[0],  # no signature
        url.replace(f"/jobs/{finished}/", f"/jobs/{other}/"),  # another job's result
    ]
    for candidate in bad:
        response = requests.get(token_server.url + candidate, timeout=10)
        assert response.status_code == 401, candidate
        assert response.json()["error"] == "invalid or expired link"


def test_expired_link_gets_401(token_server: ServerProcess, finished: str) -> None:
    # A correctly signed link whose time is up: signed here with the key the
    # server derives from its token, so no test has to wait for a clock.
    state = create_app(MLQ(token_server.namespace, redis_url=token_server.redis_url),
                       token=TOKEN).extensions["mlq"]
    expires = int(time.time()) - 1
    url = f"/jobs/{finished}/result?expires={expires}&sig={sign_link(state, finished, expires)}"
    response = requests.get(token_server.url + url, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid or expired link"
    later = int(time.time()) + 60  # the same key signing a live link: accepted
    url = f"/jobs/{finished}/result?expires={later}&sig={sign_link(state, finished, later)}"
    assert requests.get(token_server.url + url, timeout=10).status_code == 200


def test_links_are_checked_on_an_open_server_too(server: ServerProcess, token_server: ServerProcess,
                                                 finished: str) -> None:
    # each server draws its own key when it has no token, secret or link key
    url = _link(token_server, finished)
    assert requests.get(server.url + url, timeout=10).status_code == 401
    assert requests.get(f"{server.url}/jobs/{finished}/result", timeout=10).status_code == 200


# -- bind policy ----------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"])
def test_loopback_binds_need_no_token(address: str) -> None:
    assert is_loopback(address)
    check_bind(address, None, False)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1"])
def test_non_loopback_without_token_is_refused(address: str) -> None:
    with pytest.raises(BindRefused, match="token") as raised:
        check_bind(address, None, False)
    assert isinstance(raised.value, MLQError)
    assert "--insecure" in str(raised.value)
    check_bind(address, "a-token", False)
    check_bind(address, None, True)
