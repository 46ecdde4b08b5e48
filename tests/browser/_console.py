"""Helpers for the browser tests (see conftest.py): headless Chromium from Debian's ``chromium`` package, driven by Playwright for Python.

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

from mistersmith.actors import Agent, command
from mistersmith.config import load_settings
from mistersmith.node import Node

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(os.environ.get("MISTERSMITH_ARTIFACTS", ROOT / "tmp" / "artifacts"))
DOCS_IMAGES = ROOT / "docs" / "images"
TOKEN = "console-test-token-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the dev extra has it
    HAVE_PLAYWRIGHT = False

SKIP_REASON = None if CHROMIUM is not None and HAVE_PLAYWRIGHT else (
    "!!! BROWSER TESTS SKIPPED: "
    + ("Debian's chromium (apt-get install -y chromium)" if CHROMIUM is None else "playwright (the dev extra)")
    + " is not installed; the console is untested here. .ci/run installs it; so can you !!!")


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


def artifact(page: Any, name: str, docs: str | None = None) -> Path:
    """Save a screenshot of the page as an artifact (and as docs/images/``docs`` when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if docs is not None and os.environ.get("MISTERSMITH_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs)
    return path


def url_of(node: Node) -> str:
    assert node.http is not None
    return node.http.url


def sign_in(page: Any, node: Node, token: str = TOKEN) -> None:
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
