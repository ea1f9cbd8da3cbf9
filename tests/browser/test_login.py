"""With a token, the dashboard asks for it once; its forms refuse cross-site requests."""

from __future__ import annotations

import re
from typing import Any

import requests

from tests.http.conftest import TOKEN, ServerProcess


def test_login_once_then_browse(page: Any, browser_context: Any,
                                dash_token_server: ServerProcess) -> None:
    url = dash_token_server.url
    page.goto(url + "/ui/workers")
    assert page.url.startswith(url + "/ui/login?next=")  # asked for the token first

    page.fill("input[name=token]", "not the token")
    with page.expect_response(lambda r: r.url.endswith("/ui/login")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert "not the server's token" in page.locator(".notice").inner_text()

    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/ui/workers")  # back where the user was going

    cookies = {c["name"]: c for c in browser_context.cookies(url)}
    session = cookies["mlq_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert cookies["mlq_csrf"]["httpOnly"] and cookies["mlq_csrf"]["sameSite"] == "Strict"

    for path in ("/", "/ui/jobs", "/ui/deadletters", "/ui/functions"):  # asked only once
        page.goto(url + path)
        assert "/ui/login" not in page.url, path

    # the session opens the dashboard, not the API: that still wants the bearer token
    jar = {"mlq_session": session["value"]}
    assert requests.get(url + "/jobs/count", cookies=jar, timeout=10).status_code == 401
    assert dash_token_server.get("/jobs/count").status_code == 200
    assert requests.get(url + "/", cookies=jar, timeout=10, allow_redirects=False).status_code == 200

    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/ui/login"))
    page.goto(url + "/")
    assert "/ui/login" in page.url


def _logged_in(server: ServerProcess) -> tuple[requests.Session, str]:
    """A requests session logged in through the form, and the page's CSRF token."""
    client = requests.Session()
    form = client.get(server.url + "/ui/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    done = client.post(server.url + "/ui/login", data={"token": TOKEN, "csrf": csrf, "next": "/"},
                       allow_redirects=False, timeout=10)
    assert done.status_code == 303, done.text
    set_cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    page = client.get(server.url + "/ui/deadletters", timeout=10).text
    session_csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert session_csrf != csrf  # derived from the new session, not the login form's
    return client, session_csrf


def test_a_csrf_token_works_only_in_its_own_session(dash_token_server: ServerProcess) -> None:
    action = dash_token_server.url + "/ui/deadletter/requeue"
    first, first_csrf = _logged_in(dash_token_server)
    second, second_csrf = _logged_in(dash_token_server)
    assert first_csrf != second_csrf
    assert second.post(action, data={"csrf": first_csrf}, timeout=10,
                       allow_redirects=False).status_code == 403
    assert second.post(action, data={"csrf": second_csrf}, timeout=10,
                       allow_redirects=False).status_code == 303


def test_logout_revokes_the_session_for_good(dash_token_server: ServerProcess) -> None:
    url = dash_token_server.url
    client, csrf = _logged_in(dash_token_server)
    stolen = client.cookies.get("mlq_session")
    assert client.post(url + "/ui/logout", data={"csrf": csrf}, timeout=10,
                       allow_redirects=False).status_code == 303
    # the cookie copied before logout opens nothing afterwards
    replay = requests.get(url + "/ui/jobs", cookies={"mlq_session": stolen}, timeout=10,
                          allow_redirects=False)
    assert replay.status_code == 302 and "/ui/login" in replay.headers["Location"]


def test_forms_refuse_cross_site_requests(dash_token_server: ServerProcess) -> None:
    url = dash_token_server.url
    action = url + "/ui/deadletter/requeue"
    # no session: refused before anything else
    assert requests.post(action, timeout=10, allow_redirects=False).status_code == 401
    client, csrf = _logged_in(dash_token_server)
    # a session but no CSRF token, or a wrong one: what a forged form would send
    assert client.post(action, timeout=10, allow_redirects=False).status_code == 403
    assert client.post(action, data={"csrf": "x" * 43}, timeout=10,
                       allow_redirects=False).status_code == 403
    # the right token from another origin
    evil = client.post(action, data={"csrf": csrf}, headers={"Origin": "http://evil.example"},
                       timeout=10, allow_redirects=False)
    assert evil.status_code == 403 and "cross-site" in evil.text
    # the page's own form: accepted
    ok = client.post(action, data={"csrf": csrf}, headers={"Origin": url}, timeout=10,
                     allow_redirects=False)
    assert ok.status_code == 303 and "/ui/deadletters?done=requeued" in ok.headers["Location"]


def test_login_redirects_only_to_this_server(dash_token_server: ServerProcess) -> None:
    client = requests.Session()
    form = client.get(dash_token_server.url + "/ui/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        done = client.post(dash_token_server.url + "/ui/login",
                           data={"token": TOKEN, "csrf": csrf, "next": target},
                           allow_redirects=False, timeout=10)
        assert done.headers["Location"] == "/ui", target


def test_pages_forbid_framing(dash_server: ServerProcess) -> None:
    response = dash_server.get("/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
