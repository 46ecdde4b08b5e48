"""Real cancellation of async handlers: by a stop, a restart, a closing runtime, a hung-handler timeout.

A cancelled handler sees ``CancelledError``, its ``finally`` runs, and its
incarnation's thread ends normally: nothing is counted in ``leaked_threads``.
Nothing sleeps to synchronise; the hung handler runs on a ``FakeClock``. The
network call goes to an HTTP server the test starts on localhost (``httpx`` is
not installed, so the handler speaks HTTP over ``asyncio.open_connection``).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from _async_helpers import Seen, SlowHTTP, ask_in_thread, rt, slow_http
from _helpers import WAIT_S
from mistersmith import (
    Agent,
    AgentFailedError,
    FakeClock,
    RestartingError,
    Runtime,
    RuntimeClosedError,
    UnknownAgentError,
    command,
)

def fetch_kind(seen: Seen) -> type[Agent]:
    class Fetcher(Agent):
        kind = "fetcher"

        @command
        async def fetch(self, port: int) -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return (await reader.read()).decode()
            except asyncio.CancelledError:
                seen.log.append("cancelled")
                raise
            finally:
                writer.close()
                seen.log.append(f"finally ({'cancelled' if self.cancelled.is_set() else 'done'})")
                seen.unwound.set()

    return Fetcher


@pytest.mark.parametrize(
    ("how", "error"),
    [("stop", UnknownAgentError), ("restart", RestartingError)],
)
def test_stopping_the_agent_cancels_an_async_network_call(
    rt: Runtime, slow_http: SlowHTTP, how: str, error: type[Exception]
) -> None:
    seen = Seen()
    agent = rt.spawn(fetch_kind(seen), "f", shutdown_s=WAIT_S)
    incarnation = rt.system.agents[agent].incarnation
    assert incarnation is not None and incarnation.thread is not None
    outcome = ask_in_thread(rt, agent, "fetch", {"port": slow_http.port})
    assert slow_http.got_request.wait(WAIT_S)  # the request is in flight, the handler awaits the answer
    (rt.stop if how == "stop" else rt.restart)(agent)
    assert isinstance(outcome(), error)
    assert seen.log == ["cancelled", "finally (cancelled)"]
    incarnation.thread.join(WAIT_S)
    assert not incarnation.thread.is_alive()
    assert rt.stats()["leaked_threads"] == 0 and rt.stats()["abandoned_threads"] == 0
    assert rt.history(agent_id=agent, event_types=["shutdown_timeout", "failed"]) == []
    if how == "restart":
        assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_closing_the_runtime_cancels_an_async_call_and_its_caller_hears_closed(slow_http: SlowHTTP) -> None:
    seen = Seen()
    rt = Runtime(clock=FakeClock())
    try:
        agent = rt.spawn(fetch_kind(seen), "f")
        outcome = ask_in_thread(rt, agent, "fetch", {"port": slow_http.port})
        assert slow_http.got_request.wait(WAIT_S)
    finally:
        rt.close()
    assert isinstance(outcome(), RuntimeClosedError)
    assert seen.unwound.is_set()
    assert rt.stats()["leaked_threads"] == 0


def hang_kind(seen: Seen) -> type[Agent]:
    class Hangs(Agent):
        kind = "hangs"

        @command
        async def hang(self) -> None:
            seen.threads.append(threading.current_thread())
            try:
                seen.entered.set()
                await asyncio.Event().wait()  # never set: only cancellation ends it
            finally:
                seen.unwound.set()

        @command
        async def hang_blocking(self) -> None:
            """Blocks its own loop: cancellation cannot reach it until ``release``."""
            seen.threads.append(threading.current_thread())
            seen.entered.set()
            seen.release.wait(WAIT_S)

    return Hangs


def test_a_hung_async_handler_is_cancelled_past_command_timeout_s_and_no_thread_leaks(
    rt: Runtime, clock: FakeClock
) -> None:
    seen = Seen()
    agent = rt.spawn(hang_kind(seen), "h", command_timeout_s=1.0)
    outcome = ask_in_thread(rt, agent, "hang", {})
    assert seen.entered.wait(WAIT_S)
    clock.advance(0.5)  # within command_timeout_s: nothing happens
    assert not seen.unwound.is_set() and rt.history(agent_id=agent, event_types=["failed"]) == []
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        clock.advance(0.6)
        restarted.get(WAIT_S)
    error = outcome()
    assert isinstance(error, AgentFailedError) and "command_timeout_s=1.0" in error.reason
    assert seen.unwound.is_set()  # its finally ran before the caller heard
    [old] = seen.threads
    old.join(WAIT_S)
    assert not old.is_alive()
    [failed] = rt.history(agent_id=agent, event_types=["failed"])
    assert failed.data == {"command": "hang", "hung": True}
    assert rt.stats()["leaked_threads"] == 0 and rt.stats()["abandoned_threads"] == 0
    assert rt.get_agent(agent)["restart_count"] == 1
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_an_async_handler_that_blocks_its_loop_is_abandoned_and_counted_like_a_sync_one(
    rt: Runtime, clock: FakeClock
) -> None:
    seen = Seen()
    agent = rt.spawn(hang_kind(seen), "h", command_timeout_s=1.0, shutdown_s=0.05)
    outcome = ask_in_thread(rt, agent, "hang_blocking", {})
    assert seen.entered.wait(WAIT_S)
    try:
        with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
            clock.advance(1.1)
            restarted.get(WAIT_S)
        assert isinstance(outcome(), AgentFailedError)
        assert rt.stats()["leaked_threads"] == 1 and rt.stats()["abandoned_threads"] == 1
    finally:
        seen.release.set()
    [old] = seen.threads
    old.join(WAIT_S)
    assert not old.is_alive()
    assert rt.stats()["leaked_threads"] == 0  # it returned: no longer leaked
