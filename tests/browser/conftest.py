"""Browser tests: headless Chromium from Debian's ``chromium`` package, driven by Playwright for Python.

Playwright's own browser download is never used (``executable_path`` is the
system ``chromium``). Without it (or without Playwright) every test here is
skipped with a loud reason; ``.ci/run`` installs the package, so CI always
runs them. Screenshots of each scenario go to ``$MISTERSMITH_ARTIFACTS``
(default ``tmp/artifacts`` at the repository root); with
``MISTERSMITH_UPDATE_DOCS_IMAGES=1`` the tree and history ones also replace
``docs/images/console-*.png``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mistersmith.actors import Agent, command
from mistersmith.config import load_settings
from mistersmith.node import Node

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(os.environ.get("MISTERSMITH_ARTIFACTS", ROOT / "tmp" / "artifacts"))
DOCS_IMAGES = ROOT / "docs" / "images"
TOKEN = "console-test-token-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra has it
    sync_playwright = None

if CHROMIUM is None or sync_playwright is None:
    missing = "Debian's chromium (apt-get install -y chromium)" if CHROMIUM is None else "playwright (the dev extra)"
    pytest.skip(f"!!! BROWSER TESTS SKIPPED: {missing} is not installed; the console is untested here. "
                f".ci/run installs it; so can you !!!", allow_module_level=True)


class Calc(Agent):
    """A kind with a command to send from the agent page, and one that crashes."""

    @command
    def add(self, a: int, b: int) -> int:
        return a + b

    @command
    def crash(self) -> None:
        raise RuntimeError("boom: the console test crashed it")


T = TypeVar("T")


def off(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a helper thread: Playwright's sync API keeps an event loop running in
    the test's thread, where the Runtime rightly refuses blocking calls."""
    with ThreadPoolExecutor(1, thread_name_prefix="console-test") as pool:
        return pool.submit(fn, *args, **kwargs).result(120)


def artifact(page: Page, name: str, docs: str | None = None) -> Path:
    """Save a screenshot of the page as an artifact (and as docs/images/``docs`` when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if docs is not None and os.environ.get("MISTERSMITH_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def console_node() -> Iterator[Node]:
    """A whole node (embedded NATS and PostgreSQL) with a token, serving the console; one per test,
    as the leak check stops every actor a test leaves behind."""
    home = Path(tempfile.mkdtemp(prefix="ms-console-"))
    home.chmod(0o711)  # the embedded PostgreSQL's user must traverse it under root
    settings = load_settings({"node.data_dir": str(home), "http.port": 0, "http.api_token": TOKEN,
                              "http.rate_limit_per_s": 10_000.0, "http.rate_limit_burst": 10_000, "node.id": "console-node"})
    node = Node(settings, kinds={"calc": Calc})
    try:
        off(node.start)
        yield node
    finally:
        off(node.stop)
        shutil.rmtree(home, ignore_errors=True)


def url_of(node: Node) -> str:
    assert node.http is not None
    return node.http.url


def sign_in(page: Page, node: Node, token: str = TOKEN) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url_of(node)}/ui")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Supervision tree")).to_be_visible()


def stop_all(node: Node, ids: Any) -> None:
    runtime = node.runtime
    assert runtime is not None

    def stop() -> None:
        for agent_id in ids:
            try:
                runtime.stop(agent_id)
            except Exception:
                pass

    off(stop)
