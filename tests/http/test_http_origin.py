"""Safe to expose: Host and cross-site checks, uploads the server never unpickles,
client-signed code, and the admin scope (docs/SECURITY.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import jsonpickle
import pytest
import redis
import requests

from mlq import MLQ

from .conftest import JSON, ServerProcess

SECRET = "shared-secret-for-the-upload-tests"
ADMIN = "admin-t0ken-for-tests"
USER = "user-t0ken-for-tests"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, ServerProcess]]:
    """Servers of namespaces of their own, so uploads here reach no other test's worker."""
    started = {
        "open": ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url),
        "named": ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url,
                               allowed_hosts=("mlq.example", "10.1.2.3")),
        "any": ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url,
                             allowed_hosts=("*",)),
        "scoped": ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url,
                                token=USER, admin_token=ADMIN, secret=SECRET),
        "neighbour": ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url,
                                   token=USER, admin_token=ADMIN, secret=SECRET),
    }
    for name, server in started.items():
        server.log_path = tmp_path_factory.mktemp("origin") / f"{name}.log"
        server.start()
    yield started
    for server in started.values():
        server.stop()
        MLQ(server.namespace, redis_url=redis_url).clear_all()


def _keys(server: ServerProcess) -> set[bytes]:
    client = redis.Redis.from_url(server.redis_url)
    return {k for k in client.scan_iter(match=f"mlq:{{{server.namespace}}}:*".encode())
            if b":heartbeat:" not in k and not k.endswith((b":workers", b":sweep_lock"))}


def _envelope(payload: bytes, **extra: str) -> str:
    return json.dumps({"py/b64": base64.b64encode(payload).decode(), **extra})


def _sign(payload: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


class Canary:
    """Unpickling this creates a file: proof that someone unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


# -- Host ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/healthz", "/jobs/count", "/openapi.json", "/ui/", "/consumer"])
def test_an_unknown_host_is_refused_on_every_route(servers: dict[str, ServerProcess],
                                                  path: str) -> None:
    response = servers["open"].get(path, headers={"Host": "attacker.example"})
    assert response.status_code == 403
    assert "--allowed_hosts" in response.json()["error"]


def test_dns_rebinding_cannot_post_a_job(servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]
    before = _keys(server)
    response = server.post("/jobs", json={"msg": 1},
                           headers={"Host": "attacker.example:%d" % server.port})
    assert response.status_code == 403
    assert _keys(server) == before


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_names_are_answered(servers: dict[str, ServerProcess], host: str) -> None:
    server = servers["open"]
    for value in (host, f"{host}:{server.port}"):
        assert server.get("/healthz", headers={"Host": value}).text == "ok"


def test_allowed_hosts_adds_names_and_star_allows_any(servers: dict[str, ServerProcess]) -> None:
    named = servers["named"]
    assert named.get("/healthz", headers={"Host": "mlq.example:443"}).text == "ok"
    assert named.get("/healthz", headers={"Host": "10.1.2.3"}).text == "ok"
    assert named.get("/healthz", headers={"Host": "other.example"}).status_code == 403
    assert servers["any"].get("/healthz", headers={"Host": "anything.example"}).text == "ok"


# -- cross-site writes -------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {"Origin": "http://attacker.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
@pytest.mark.parametrize(("method", "path"), [("POST", "/jobs"), ("POST", "/consumer"),
                                              ("DELETE", "/consumer?name=x"),
                                              ("DELETE", "/deadletter"),
                                              ("POST", "/deadletter/requeue")])
def test_a_state_change_from_another_site_is_refused(servers: dict[str, ServerProcess],
                                                    headers: dict[str, str], method: str,
                                                    path: str) -> None:
    server = servers["open"]
    before = _keys(server)
    response = server.request(method, path, data=b'{"msg": 1}',
                              headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 403
    assert "cross-site" in response.json()["error"]
    assert _keys(server) == before


def test_same_origin_and_header_less_clients_work(servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert server.post("/jobs", json={"msg": 1}, headers=own).status_code == 200
    # curl, requests and the CLI send neither header, with any Content-Type
    plain = server.post("/jobs", data=b'{"msg": 2}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 200
    # reading stays open to any page's GET (the answers are not readable cross-origin)
    assert server.get("/jobs/count", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_uploads_need_a_json_content_type(servers: dict[str, ServerProcess],
                                          content_type: str | None) -> None:
    server = servers["open"]
    headers = {"Content-Type": content_type} if content_type else {}
    body = jsonpickle.encode(cloudpickle.dumps(len))
    for method in ("POST", "DELETE"):
        response = server.request(method, "/consumer", data=body, headers=headers)
        assert response.status_code == 415, (method, content_type)
        assert "application/json" in response.json()["error"]
    assert server.get("/consumer").json() == []


# -- the server never unpickles ------------------------------------------------------------------
def test_the_server_never_unpickles_an_upload(servers: dict[str, ServerProcess],
                                             tmp_path: Path) -> None:
    server = servers["open"]
    canary = tmp_path / "unpickled"
    payload = pickle.dumps(Canary(canary))
    nameless = server.post("/consumer", data=_envelope(payload), headers=JSON)
    assert nameless.status_code == 400 and "name" in nameless.json()["error"]
    named = server.post("/consumer?name=trap", data=_envelope(payload), headers=JSON)
    assert (named.status_code, named.text) == (200, "True")
    in_body = server.post("/consumer", data=_envelope(payload, name="trap2"), headers=JSON)
    assert in_body.text == "True"
    removed = server.delete("/consumer", data=_envelope(payload, name="trap2"), headers=JSON)
    assert removed.text == "True"
    assert server.delete("/consumer?name=trap").text == "True"
    assert not canary.exists()


def test_the_name_is_read_from_the_pickle_without_running_it(
        servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]

    def by_value(msg: Any, *args: Any) -> Any:
        return msg

    body = jsonpickle.encode(cloudpickle.dumps(by_value))
    assert server.post("/consumer", data=body, headers=JSON).text == "True"
    by_reference = jsonpickle.encode(pickle.dumps(json.dumps))
    assert server.post("/consumer", data=by_reference, headers=JSON).text == "True"
    assert server.get("/consumer").json() == ["by_value", "dumps"]
    # the original's DELETE: the same body as the upload
    assert server.delete("/consumer", data=body, headers=JSON).text == "True"
    assert server.delete("/consumer", data=by_reference, headers=JSON).text == "True"
    assert server.get("/consumer").json() == []


# -- client-signed uploads and the admin scope ----------------------------------------------------
def shout(msg: Any, *args: Any) -> str:
    return str(msg).upper()


def test_with_a_secret_only_uploads_signed_by_the_uploader_are_stored(
        servers: dict[str, ServerProcess], redis_url: str) -> None:
    server = servers["scoped"]
    payload = cloudpickle.dumps(shout)
    before = _keys(server)
    unsigned = server.post("/consumer", data=_envelope(payload), headers=JSON)
    wrong = server.post("/consumer", data=_envelope(payload), headers={
        **JSON, "X-MLQ-Signature": _sign(payload, "another secret")})
    garbled = server.post("/consumer", data=_envelope(payload, signature="sha256=zz"),
                          headers=JSON)
    for response in (unsigned, wrong, garbled):
        assert response.status_code == 403, response.text
        assert response.json()["error"]
    assert _keys(server) == before

    signed = server.post("/consumer", data=_envelope(payload),
                         headers={**JSON, "X-MLQ-Signature": _sign(payload)})
    assert (signed.status_code, signed.text) == (200, "True")
    in_body = server.post("/consumer?name=shout_again",
                          data=_envelope(payload, signature=_sign(payload)), headers=JSON)
    assert in_body.text == "True"

    worker = MLQ(server.namespace, redis_url=redis_url, secret=SECRET)
    worker.create_listener(None)
    try:
        job_id = server.post_job("hi", functions=["shout"])
        assert worker.wait(job_id, timeout=10)["result"] == "HI"
    finally:
        worker.shutdown(timeout=10)


def test_the_admin_token_guards_code_and_dead_letters(servers: dict[str, ServerProcess]) -> None:
    server = servers["scoped"]
    user = {"Authorization": f"Bearer {USER}"}
    payload = cloudpickle.dumps(shout)
    signed = {**JSON, **user, "X-MLQ-Signature": _sign(payload)}
    assert server.post("/jobs", json={"msg": 1}, headers=user).status_code == 200
    assert server.get("/deadletter", headers=user).status_code == 200
    for method, path, headers in [("POST", "/consumer", signed), ("DELETE", "/consumer?name=x", user),
                                  ("POST", "/deadletter/requeue", user),
                                  ("DELETE", "/deadletter", user),
                                  ("POST", "/deadletter/1/requeue", user),
                                  ("DELETE", "/deadletter/1", user)]:
        response = server.request(method, path, data=_envelope(payload), headers=headers)
        assert response.status_code == 403, (method, path)
        assert "admin token" in response.json()["error"]
    nobody = server.request("POST", "/consumer", auth=False, data=_envelope(payload),
                            headers={**JSON, "X-MLQ-Signature": _sign(payload)})
    assert nobody.status_code == 401
    # the admin token opens everything
    assert server.post("/deadletter/requeue").json() == {"requeued": 0}
    assert server.get("/jobs/count").status_code == 200


def _dashboard_login(server: ServerProcess, token: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(server.url + "/ui/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = session.post(server.url + "/ui/login", data={"csrf": csrf, "token": token,
                                                         "next": "/ui/deadletters"},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    # pages of a session carry a CSRF token derived from it
    page = session.get(server.url + "/ui/deadletters", timeout=10).text
    return session, re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_the_dashboard_changes_dead_letters_only_in_an_admin_session(
        servers: dict[str, ServerProcess]) -> None:
    server = servers["scoped"]
    user, csrf = _dashboard_login(server, USER)
    assert user.get(server.url + "/ui/deadletters", timeout=10).status_code == 200
    refused = user.post(server.url + "/ui/deadletter/requeue", data={"csrf": csrf},
                        allow_redirects=False, timeout=10)
    assert refused.status_code == 403
    admin, csrf = _dashboard_login(server, ADMIN)
    done = admin.post(server.url + "/ui/deadletter/requeue", data={"csrf": csrf},
                      allow_redirects=False, timeout=10)
    assert done.status_code == 303


def test_a_signed_link_opens_only_its_own_job(servers: dict[str, ServerProcess],
                                              redis_url: str) -> None:
    mine, neighbour = servers["scoped"], servers["neighbour"]
    own_job = mine.post_job("mine")
    for _ in range(int(own_job) - int(neighbour.post_job("theirs"))):
        neighbour.post_job("catching up")  # the neighbour now has a job with the same id
    link = mine.get(f"/jobs/{own_job}/link?ttl=60").json()["url"]
    assert requests.get(mine.url + link, timeout=10).status_code == 202  # valid, not done
    assert requests.get(neighbour.url + link, timeout=10).status_code == 401
    # after clear_all the id comes again, for another job: the old link opens nothing
    MLQ(mine.namespace, redis_url=redis_url).clear_all()
    while int(mine.post_job("reborn")) < int(own_job):
        pass
    assert requests.get(mine.url + link, timeout=10).status_code == 401


def test_links_live_at_most_30_days(servers: dict[str, ServerProcess]) -> None:
    server = servers["scoped"]
    job_id = server.post_job("x")
    assert server.get(f"/jobs/{job_id}/link?ttl={30 * 24 * 3600}").status_code == 200
    assert server.get(f"/jobs/{job_id}/link?ttl={30 * 24 * 3600 + 1}").status_code == 400


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    """A server with the default failure throttle, for this module alone."""
    server = ServerProcess(namespace=f"o_{uuid.uuid4().hex[:10]}", redis_url=redis_url,
                           token=USER, max_auth_failures=10,
                           log_path=tmp_path_factory.mktemp("strict") / "server.log").start()
    yield server
    server.stop()


def test_token_guessing_is_throttled(strict: ServerProcess) -> None:
    for _ in range(10):
        assert strict.get("/jobs/count", auth=False,
                          headers={"Authorization": "Bearer guess-guess-guess"}).status_code == 401
    for _ in range(3):
        throttled = strict.get("/jobs/count", auth=False,
                               headers={"Authorization": "Bearer guess-guess-guess"})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert "try again" in throttled.json()["error"]
    # a request with the right token is never held back, from this address either
    assert strict.get("/jobs/count").status_code == 200
    assert strict.get("/healthz").text == "ok"


@pytest.mark.parametrize("token", ["short", "fifteen-chars-x"])
def test_short_tokens_are_refused_at_start_up(redis_url: str, token: str) -> None:
    from controller.app import create_app

    for settings in ({"token": token}, {"admin_token": token}):
        with pytest.raises(ValueError, match="at least 16 characters"):
            create_app(MLQ("unused", redis_url=redis_url), **settings)
