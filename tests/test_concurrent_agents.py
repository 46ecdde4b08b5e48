"""A kind with ``concurrency = N`` runs up to N commands at once (``actors._concurrent``).

Commands start in mailbox order and may finish in any order; a cancel, a
bound or a ``MisterSmithError`` touches one command only; a crash ends the
incarnation and its other callers hear ``restarting``; a stop cancels them all.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

import pytest

from _async_helpers import ask_in_thread, rt
from _helpers import WAIT_S
from mistersmith import (
    Agent,
    AgentFailedError,
    CommandCancelledError,
    CommandError,
    CommandTimeoutError,
    FakeClock,
    RestartingError,
    Runtime,
    SpecError,
    UnknownAgentError,
    command,
)

class Gate:
    """Handlers wait at a named gate until the test opens it; ``arrived`` says who is waiting."""

    def __init__(self) -> None:
        self.arrived: dict[str, threading.Event] = {}
        self.open: dict[str, threading.Event] = {}
        self.order: list[str] = []
        self.unwound: list[str] = []

    def at(self, name: str) -> tuple[threading.Event, threading.Event]:
        return self.arrived.setdefault(name, threading.Event()), self.open.setdefault(name, threading.Event())


def parallel_kind(gate: Gate, n: int = 3) -> type[Agent]:
    class Parallel(Agent):
        kind = "parallel"
        concurrency: ClassVar[int] = n

        @command
        async def wait(self, name: str) -> str:
            arrived, opened = gate.at(name)
            gate.order.append(f"start {name}")
            arrived.set()
            try:
                await asyncio.to_thread(opened.wait, WAIT_S)
                self.progress(name)
                return name
            finally:
                gate.unwound.append(name)

        @command
        async def refuse(self) -> None:
            raise CommandError("no", code="nope")

        @command
        async def crash(self) -> None:
            raise RuntimeError("boom")

        @command
        async def forever(self, name: str) -> None:
            gate.at(name)[0].set()
            try:
                await asyncio.Event().wait()
            finally:
                gate.unwound.append(name)

    return Parallel


def test_commands_run_side_by_side_up_to_the_limit_and_finish_in_any_order(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate, 2), "p")
    a = ask_in_thread(rt, agent, "wait", {"name": "a"}, timeout=WAIT_S)
    assert gate.at("a")[0].wait(WAIT_S)
    b = ask_in_thread(rt, agent, "wait", {"name": "b"}, timeout=WAIT_S)
    assert gate.at("b")[0].wait(WAIT_S)  # b started while a still runs
    c = rt.ask_stream(agent, "wait", {"name": "c"}, timeout=WAIT_S)  # queued: the limit is 2
    assert not gate.at("c")[0].is_set()
    gate.at("b")[1].set()
    assert b() == "b"  # b finished first
    assert gate.at("c")[0].wait(WAIT_S)  # a slot was free: c started, in mailbox order
    gate.at("c")[1].set()
    assert [p.data for p in c] == ["c"] and c.result() == "c"  # its own progress, to its own caller
    gate.at("a")[1].set()
    assert a() == "a"
    assert gate.order == ["start a", "start b", "start c"]
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_an_error_or_a_cancel_touches_one_command_only(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate), "p")
    a = ask_in_thread(rt, agent, "forever", {"name": "a"}, timeout=WAIT_S, correlation_id="a")
    assert gate.at("a")[0].wait(WAIT_S)
    with pytest.raises(CommandError):
        rt.ask(agent, "refuse", timeout=WAIT_S)
    assert rt.cancel(agent, "a") is True
    assert isinstance(a(), CommandCancelledError)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 0


def test_a_crash_ends_the_incarnation_and_the_others_hear_restarting(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate), "p")
    a = ask_in_thread(rt, agent, "forever", {"name": "a"}, timeout=WAIT_S)
    assert gate.at("a")[0].wait(WAIT_S)
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        with pytest.raises(AgentFailedError):
            rt.ask(agent, "crash", timeout=WAIT_S)
        restarted.get(WAIT_S)
    assert isinstance(a(), RestartingError)
    assert "a" in gate.unwound  # its finally ran
    assert rt.get_agent(agent)["restart_count"] == 1


def test_a_stop_cancels_every_running_command(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate), "p", shutdown_s=WAIT_S)
    a = ask_in_thread(rt, agent, "forever", {"name": "a"}, timeout=WAIT_S)
    b = ask_in_thread(rt, agent, "forever", {"name": "b"}, timeout=WAIT_S)
    assert gate.at("a")[0].wait(WAIT_S) and gate.at("b")[0].wait(WAIT_S)
    rt.stop(agent)
    assert isinstance(a(), UnknownAgentError) and isinstance(b(), UnknownAgentError)
    assert sorted(gate.unwound) == ["a", "b"]
    assert rt.stats()["leaked_threads"] == 0


def test_idle_timeout_cancels_the_silent_command_and_the_others_go_on(rt: Runtime, clock: FakeClock) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate), "p", idle_timeout_s=2.0, command_timeout_s=100.0)
    a = ask_in_thread(rt, agent, "forever", {"name": "a"}, timeout=WAIT_S)
    assert gate.at("a")[0].wait(WAIT_S)
    clock.advance(2.5)
    error = a()
    assert isinstance(error, CommandTimeoutError) and error.idle
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 0


def test_a_durable_kind_cannot_be_concurrent(rt: Runtime) -> None:
    with pytest.raises(SpecError, match="concurrency"):
        rt.spawn(parallel_kind(Gate()), "p", durable=True)


def test_many_concurrent_commands_from_asyncio(rt: Runtime) -> None:
    class Sleeper(Agent):
        kind = "sleeper"
        concurrency: ClassVar[int] = 100

        @command
        async def nap(self, i: int) -> int:
            await asyncio.sleep(0.05)
            return i

    agent = rt.spawn(Sleeper, "s")

    async def main() -> list[Any]:
        return await asyncio.gather(*(rt.aask(agent, "nap", {"i": i}, timeout=WAIT_S) for i in range(100)))

    assert asyncio.run(main()) == list(range(100))


def test_a_sync_handler_that_hangs_in_a_concurrent_kind_fails_the_incarnation_as_a_hang(
    rt: Runtime, clock: FakeClock
) -> None:
    release = threading.Event()

    class Blocking(Agent):
        kind = "blocking"
        concurrency: ClassVar[int] = 2

        @command
        def stuck(self) -> None:
            entered.set()
            release.wait(WAIT_S)  # a sync call that never returns in time: the loop is blocked

    entered = threading.Event()
    agent = rt.spawn(Blocking, "b", command_timeout_s=1.0, shutdown_s=0.5)
    outcome = ask_in_thread(rt, agent, "stuck", {})
    assert entered.wait(WAIT_S)
    try:
        clock.advance(1.1)  # past command_timeout_s: cancelled, with `timeout` to its caller
        assert isinstance(outcome(), CommandTimeoutError)
        with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
            clock.advance(0.6)  # still not ended a grace later: the incarnation is given up on
            restarted.get(WAIT_S)
        assert rt.stats()["abandoned_threads"] == 1
        [failed] = rt.history(agent_id=agent, event_types=["failed"])
        assert failed.data == {"command": "stuck", "hung": True}
    finally:
        release.set()
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_a_full_concurrent_agent_waits_without_spinning(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(parallel_kind(gate, 2), "p")
    a = ask_in_thread(rt, agent, "forever", {"name": "a"}, timeout=WAIT_S, correlation_id="a")
    b = ask_in_thread(rt, agent, "forever", {"name": "b"}, timeout=WAIT_S, correlation_id="b")
    assert gate.at("a")[0].wait(WAIT_S) and gate.at("b")[0].wait(WAIT_S)  # full now
    queued = [rt.ask_stream(agent, "wait", {"name": f"q{i}"}, timeout=WAIT_S) for i in range(3)]  # they wake it
    incarnation = rt.system.agents[agent].incarnation
    assert incarnation is not None and incarnation.thread is not None
    cpu = _cpu_of(incarnation.thread)
    threading.Event().wait(0.3)  # a window to measure in (not a synchronisation): a spinning loop burns it all
    spent_s = (_cpu_of(incarnation.thread) - cpu) / 1e9
    assert spent_s < 0.1, f"the agent's thread used {spent_s:.3f} s of CPU in 0.3 s while it waited, full"
    assert rt.cancel(agent, "a") is True and rt.cancel(agent, "b") is True
    assert isinstance(a(), CommandCancelledError) and isinstance(b(), CommandCancelledError)
    for i, stream in enumerate(queued):
        gate.at(f"q{i}")[1].set()
        assert stream.result() == f"q{i}"


def _cpu_of(thread: threading.Thread) -> int:
    """A thread's CPU time (ns), from /proc (Linux)."""
    import os

    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
