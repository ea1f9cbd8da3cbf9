"""Fixtures for the dashboard's browser tests: Debian's chromium driven by playwright.

The browser is the system's (apt package `chromium`, installed by .ci/run),
never one downloaded at run time (`playwright install` is not used). When it or
the playwright package is missing, the tests FAIL saying what to install: a
skipped browser test would let a broken dashboard pass CI unnoticed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ
from tests.http.conftest import REPO, TOKEN, ServerProcess

#: Where screenshots go (gitignored); CI keeps the folder as the run's artefacts.
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("MLQ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Milliseconds a page assertion waits: a live refresh comes every 2 s.
WAIT_MS = 15_000


def _chromium_path() -> str:
    path = CHROMIUM if os.path.isabs(CHROMIUM) else (shutil.which(CHROMIUM) or CHROMIUM)
    if not os.path.exists(path):
        pytest.fail(f"the browser tests need Chromium at {path}: install Debian's package "
                    "(apt-get install chromium) or set MLQ_CHROMIUM to its path; "
                    "no browser is downloaded at run time", pytrace=False)
    return path


@pytest.fixture(scope="package")
def playwright_api() -> Iterator[Any]:
    """A running playwright (its bundled driver talks to our Chromium)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright's Python package: pip install playwright "
                    "(never `playwright install`: the tests use Debian's chromium)", pytrace=False)
    with sync_playwright() as api:
        yield api


@pytest.fixture(scope="package")
def browser(playwright_api: Any) -> Iterator[Any]:
    """One headless Chromium for every browser test: starting it is the slow part."""
    chromium = playwright_api.chromium.launch(executable_path=_chromium_path(), headless=True,
                                              args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def browser_context(browser: Any) -> Iterator[Any]:
    """A fresh context of that browser for each test: no cookies, no cache, no storage."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context: Any) -> Any:
    """A tab of the fresh context; JavaScript errors on it fail the test."""
    tab = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def artifacts() -> Path:
    """The screenshots folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser_namespace() -> str:
    return f"demo_{uuid.uuid4().hex[:8]}"


def _serve(tmp_path_factory: pytest.TempPathFactory, **settings: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(log_path=tmp_path_factory.mktemp("dash") / "server.log",
                           **settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dash_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                browser_namespace: str) -> Iterator[ServerProcess]:
    """A real gevent server subprocess without a token, on the module's namespace."""
    yield from _serve(tmp_path_factory, namespace=browser_namespace, redis_url=redis_url)


@pytest.fixture(scope="module")
def dash_token_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                      browser_namespace: str) -> Iterator[ServerProcess]:
    """The same, wanting the API token (the dashboard asks for it once)."""
    yield from _serve(tmp_path_factory, namespace=browser_namespace, redis_url=redis_url,
                      token=TOKEN)


@pytest.fixture(scope="module")
def dash_worker(request: pytest.FixtureRequest, redis_url: str,
                browser_namespace: str) -> Iterator[MLQ]:
    """An in-process consumer (4 threads) of queues default and gpu, running the module's LISTENERS."""
    q = MLQ(browser_namespace, redis_url=redis_url, heartbeat_interval=0.2, concurrency=4,
            queues=("default", "gpu"))
    q.clear_all()
    for function in getattr(request.module, "LISTENERS", []):
        q.create_listener(function)
    yield q
    q.shutdown(timeout=10)
    q.clear_all()


def still_picture(page: Any, artifacts: Path, name: str, docs_name: str) -> None:
    """A screenshot without the flash of changed numbers; into docs/ when asked to
    (MLQ_UPDATE_SCREENSHOT=1)."""
    page.evaluate("document.querySelectorAll('.changed').forEach(e => e.classList.remove('changed'))")
    page.screenshot(path=str(artifacts / name), full_page=True)
    if os.environ.get("MLQ_UPDATE_SCREENSHOT"):
        shutil.copyfile(artifacts / name, REPO / "docs" / docs_name)
