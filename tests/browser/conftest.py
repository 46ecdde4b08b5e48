"""Browser tests: headless Chromium from Debian's ``chromium`` package, driven by Playwright for Python.

Playwright's own browser download is never used (``executable_path`` is the
system ``chromium``). Without it (or without Playwright) every test here is
skipped with a loud reason (``_console``); ``.ci/run`` installs the package,
so CI always runs them. Screenshots: see ``_console.artifact``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _console import CHROMIUM, SKIP_REASON, TOKEN, Calc, off

from mistersmith.config import load_settings
from mistersmith.node import Node


@pytest.fixture(scope="module")  # not session: its running loop would refuse other tests' blocking calls
def browser() -> Iterator[Any]:
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
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
