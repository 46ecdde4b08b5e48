"""Cancelling one command by its correlation id, a caller's deadline, and ``idle_timeout_s``.

A cancelled command is not a crash: its caller gets ``cancelled`` at once, an
async handler sees ``CancelledError`` (its ``finally`` runs), a sync one sees
``self.cancelled``, a queued one never runs, and the agent lives on without a
restart. The network call is real: ``httpx.AsyncClient`` against an HTTP
server the test starts on localhost. Idle timeouts run on a ``FakeClock``.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from _async_helpers import Seen, SlowHTTP, ask_in_thread, rt, slow_http
from _helpers import WAIT_S
from mistersmith import (
    Agent,
    AgentFailedError,
    CommandCancelledError,
    CommandTimeoutError,
    FakeClock,
    Runtime,
    command,
)

def llm_kind(seen: Seen) -> type[Agent]:
    class Llm(Agent):
        kind = "llm"

        @command
        async def call(self, port: int) -> str:
            seen.threads.append(threading.current_thread())
            try:
                async with httpx.AsyncClient() as client:
                    response = await client.get(f"http://127.0.0.1:{port}/slow", timeout=WAIT_S)
                    return response.text
            except asyncio.CancelledError:
                seen.log.append("cancelled")
                raise
            finally:
                seen.log.append("finally")
                seen.unwound.set()

        @command
        async def forever(self) -> None:
            seen.entered.set()
            try:
                await asyncio.Event().wait()
            finally:
                seen.unwound.set()

        @command
        def spin(self) -> str:
            """A sync handler: cooperative, it watches ``self.cancelled``."""
            seen.entered.set()
            assert self.cancelled.wait(WAIT_S)
            seen.log.append("saw cancelled")
            return "stopped early"

        @command
        async def stream(self, steps: int) -> int:
            """Reports progress at every step; the test moves the clock between steps."""
            for i in range(steps):
                self.progress(i)
                seen.release.clear()
                seen.entered.set()  # reported: the test may move the clock now
                await asyncio.to_thread(seen.release.wait, WAIT_S)
            return steps

        @command
        def count(self) -> int:
            self.state["n"] = self.state.get("n", 0) + 1
            return int(self.state["n"])

    return Llm


def test_cancelling_a_running_httpx_call_cancels_its_task_and_the_agent_lives_on(
    rt: Runtime, slow_http: SlowHTTP
) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")
    outcome = ask_in_thread(rt, agent, "call", {"port": slow_http.port}, timeout=WAIT_S, correlation_id="c-1")
    assert slow_http.got_request.wait(WAIT_S)  # the request is in flight
    assert rt.cancel(agent, "c-1") is True
    error = outcome()
    assert isinstance(error, CommandCancelledError) and error.code == "cancelled"
    assert seen.unwound.wait(WAIT_S)
    assert seen.log == ["cancelled", "finally"]
    assert rt.cancel(agent, "c-1") is False  # nothing left to cancel
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True  # the same incarnation serves on
    assert rt.get_agent(agent)["restart_count"] == 0
    assert rt.history(agent_id=agent, event_types=["failed", "restarted"]) == []
    assert rt.stats()["cancelled"] == 1 and rt.stats()["leaked_threads"] == 0


def test_a_queued_command_that_is_cancelled_never_runs(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")
    busy = ask_in_thread(rt, agent, "forever", {}, timeout=WAIT_S, correlation_id="busy")
    assert seen.entered.wait(WAIT_S)
    queued = rt.ask_stream(agent, "count", timeout=WAIT_S, correlation_id="queued")  # returns once queued
    assert rt.cancel(agent, "queued") is True
    with pytest.raises(CommandCancelledError):
        queued.result()
    assert rt.cancel(agent, "busy") is True
    assert isinstance(busy(), CommandCancelledError)
    assert rt.ask(agent, "count", timeout=WAIT_S) == 1  # the cancelled `count` never ran


def test_a_sync_handler_sees_self_cancelled_and_its_late_result_is_dropped(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")
    outcome = ask_in_thread(rt, agent, "spin", {}, timeout=WAIT_S, correlation_id="s")
    assert seen.entered.wait(WAIT_S)
    assert rt.cancel(agent, "s") is True
    assert isinstance(outcome(), CommandCancelledError)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True  # after spin returned
    assert seen.log == ["saw cancelled"]
    incarnation = rt.system.agents[agent].incarnation
    assert incarnation is not None and not incarnation.cancelled.is_set()  # cleared for the next command


def test_cancelling_the_task_awaiting_aask_cancels_the_command(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")

    async def main() -> None:
        task = asyncio.ensure_future(rt.aask(agent, "forever", timeout=WAIT_S))
        await asyncio.to_thread(seen.entered.wait, WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen.unwound.wait(WAIT_S)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_a_caller_whose_deadline_passed_gets_timeout_and_the_running_call_is_cancelled(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")
    with pytest.raises(CommandTimeoutError):
        rt.ask(agent, "forever", timeout=0.05)
    assert seen.unwound.wait(WAIT_S)  # its task was cancelled: nobody waits for it any more
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 0


def test_a_command_whose_caller_gave_up_while_it_was_queued_is_never_started(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm")
    busy = ask_in_thread(rt, agent, "forever", {}, timeout=WAIT_S, correlation_id="busy")
    assert seen.entered.wait(WAIT_S)
    with pytest.raises(CommandTimeoutError):
        rt.ask(agent, "count", timeout=0.01)  # times out in the mailbox, behind `forever`
    assert rt.cancel(agent, "busy")
    assert isinstance(busy(), CommandCancelledError)
    assert rt.ask(agent, "count", timeout=WAIT_S) == 1  # the first `count` never ran


def test_idle_timeout_fires_on_silence_and_an_async_handler_is_cancelled_not_restarted(
    rt: Runtime, clock: FakeClock
) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm", idle_timeout_s=2.0, command_timeout_s=100.0)
    outcome = ask_in_thread(rt, agent, "forever", {}, timeout=WAIT_S)
    assert seen.entered.wait(WAIT_S)
    clock.advance(1.0)
    assert not seen.unwound.is_set()
    clock.advance(1.5)  # silent for 2.5 s > idle_timeout_s
    error = outcome()
    assert isinstance(error, CommandTimeoutError) and "idle_timeout_s=2" in str(error)
    assert seen.unwound.wait(WAIT_S)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 0
    assert rt.stats()["idle_timeouts"] == 1


def test_idle_timeout_never_kills_a_slow_handler_that_keeps_reporting_progress(
    rt: Runtime, clock: FakeClock
) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm", idle_timeout_s=2.0, command_timeout_s=100.0)
    outcome = ask_in_thread(rt, agent, "stream", {"steps": 5}, timeout=WAIT_S)
    for _ in range(5):
        assert seen.entered.wait(WAIT_S)  # the handler reported progress and waits for release
        seen.entered.clear()
        clock.advance(1.5)  # 7.5 s in all, but never 2 s without progress
        seen.release.set()
    assert outcome() == 5
    assert rt.stats()["idle_timeouts"] == 0


def test_idle_timeout_abandons_a_silent_sync_handler_as_a_hang(rt: Runtime, clock: FakeClock) -> None:
    seen = Seen()
    agent = rt.spawn(llm_kind(seen), "llm", idle_timeout_s=1.0, shutdown_s=0.05)
    outcome = ask_in_thread(rt, agent, "spin", {}, timeout=WAIT_S)
    assert seen.entered.wait(WAIT_S)
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        clock.advance(1.5)
        restarted.get(WAIT_S)
    error = outcome()
    assert isinstance(error, CommandTimeoutError) and not isinstance(error, AgentFailedError)
    assert rt.get_agent(agent)["restart_count"] == 1
