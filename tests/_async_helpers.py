"""Helpers of the async-agent tests: what handlers saw, asking from a helper thread, a runtime on a fake
clock (``rt``), and a local HTTP server whose answer waits (``slow_http``). Import the fixtures by name."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _helpers import WAIT_S, running
from mistersmith import FakeClock, Runtime, SupervisorSpec

__all__ = ["ROOT", "Seen", "SlowHTTP", "ask_in_thread", "rt", "slow_http"]


class Seen:
    """What the handlers saw, outside the agent (so it outlives incarnations)."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.unwound = threading.Event()
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[threading.Thread] = []


def ask_in_thread(rt: Runtime, agent: str, command_: str, payload: dict[str, Any],
                  **kw: Any) -> Callable[[], BaseException | Any]:
    """Ask from a helper thread (``kw``: more of ``ask``'s arguments; ``timeout`` defaults to ``WAIT_S``); the
    returned call joins it and gives the outcome (an exception or the result)."""
    outcome: list[Any] = []
    kw.setdefault("timeout", WAIT_S)

    def caller() -> None:
        try:
            outcome.append(rt.ask(agent, command_, payload, **kw))
        except BaseException as exc:  # checked by the test
            outcome.append(exc)

    thread = threading.Thread(target=caller, name="test-caller")
    thread.start()

    def result() -> BaseException | Any:
        thread.join(WAIT_S)
        assert not thread.is_alive()
        return outcome[0]

    return result


ROOT = SupervisorSpec("root", intensity=20, backoff=None)


@pytest.fixture
def rt(clock: FakeClock) -> Iterator[Runtime]:
    with running(clock=clock, root=ROOT) as runtime:
        yield runtime


class SlowHTTP:
    """A local HTTP server whose answer waits until ``release`` is set."""

    def __init__(self) -> None:
        self.got_request = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.got_request.set()
                server.release.wait(WAIT_S)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"late")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT_S)


@pytest.fixture
def slow_http() -> Iterator[SlowHTTP]:
    server = SlowHTTP()
    try:
        yield server
    finally:
        server.close()
