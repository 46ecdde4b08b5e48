"""Fixtures for the web shim: a real Hypercorn on loopback, on a node-style loop thread.

``serve(**config)`` starts a Runtime, a ``DiscoveryHub`` (storage-less) and
an ``HttpServer`` on a free port, and tears all of it down after the test.
Clients run in the test thread (``asyncio.run``) or in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _web import Served

from mistersmith import Runtime
from mistersmith.crossing import LoopThread
from mistersmith.discoveries import DiscoveryHub
from mistersmith.web import Backends, HttpServer, WebApp, WebConfig, build_app

MCP1_REQUIREMENTS = Path(__file__).resolve().parent.parent / "mcp1" / "requirements.txt"


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """A factory: ``serve(hub=True, backends={...}, **WebConfig fields)``."""
    started: list[Served] = []

    def start(*, hub: bool = True, backends: dict[str, Any] | None = None, **config: Any) -> Served:
        loop = LoopThread()
        runtime = Runtime()
        try:
            async def make() -> tuple[DiscoveryHub | None, WebApp, HttpServer]:
                the_hub = DiscoveryHub(buffer_per_subscriber=config.pop("hub_buffer", 1024)) if hub else None
                app = build_app(Backends(runtime, discoveries=the_hub, **(backends or {})),
                                WebConfig(port=0, **config))
                server = HttpServer(app, graceful_timeout_s=2.0)
                await server.start()
                return the_hub, app, server

            the_hub, app, server = loop.run(make(), 10.0)
        except BaseException:
            runtime.close()
            loop.stop()
            raise
        served = Served(loop, runtime, the_hub, app, server, config.get("api_token"))
        started.append(served)
        return served

    yield start
    for served in reversed(started):
        try:
            served.loop.run(served.server.stop(), 15.0)
        finally:
            served.runtime.close()
            served.loop.stop()


# -- the MCP SDK 1.x, in a virtualenv of its own ---------------------------------------------


@pytest.fixture(scope="session")
def mcp1_python() -> Path:
    """A Python with ``mcp>=1.20,<2`` (tests/mcp1/requirements.txt), cached per machine by its hash."""
    digest = hashlib.sha256(MCP1_REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    root = Path(os.environ.get("MISTERSMITH_TEST_VENVS", Path.home() / ".cache" / "mistersmith-test-venvs"))
    venv = root / f"mcp1-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(root / f"mcp1-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                   "-r", str(MCP1_REQUIREMENTS)], capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"installing the MCP SDK 1.x failed:\n{done.stdout}\n{done.stderr}"
            (venv / ".complete").write_text(MCP1_REQUIREMENTS.read_text())
    return python
