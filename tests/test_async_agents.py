"""Async handlers: where they run, mailbox order, async hooks, and durable state from async code.

Nothing sleeps to synchronise: tests wait on ``threading.Event``s (set from
inside the handlers), on supervision events, or on round trips through the
mailbox. Cancellation is in ``test_async_cancel``, progress in ``test_async_progress``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from _async_helpers import Seen, rt
from _helpers import WAIT_S
from mistersmith import (
    Agent,
    AgentFailedError,
    BlockingCallError,
    CommandError,
    Runtime,
    SpecError,
    StartError,
    command,
)
from mistersmith.actors._aio import open_loops



def mixed_kind(seen: Seen) -> type[Agent]:
    class Mixed(Agent):
        kind = "mixed"

        @command
        async def gathered(self, n: int) -> list[int]:
            """Two halves that can only finish together: each waits for the other's event."""
            seen.loops.append(asyncio.get_running_loop())
            seen.threads.append(threading.current_thread())
            ping, pong = asyncio.Event(), asyncio.Event()

            async def half(mine: asyncio.Event, theirs: asyncio.Event, value: int) -> int:
                mine.set()
                await theirs.wait()
                await asyncio.sleep(0)
                return value

            return list(await asyncio.gather(half(ping, pong, n), half(pong, ping, n + 1), asyncio.sleep(0, n + 2)))

        @command
        def sync_record(self, value: str) -> None:
            seen.log.append(value)

        @command
        async def async_record(self, value: str) -> None:
            await asyncio.sleep(0)
            seen.log.append(value)

        @command
        async def slow(self) -> None:
            seen.log.append("slow-start")
            seen.entered.set()
            await asyncio.to_thread(seen.release.wait, WAIT_S)
            seen.log.append("slow-end")

    return Mixed


# -- where async handlers run ----------------------------------------------------------


def test_async_handler_awaits_sleep_and_gather_on_its_own_loop_in_its_own_thread(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(mixed_kind(seen), "m")
    assert rt.ask(agent, "gathered", {"n": 1}, timeout=WAIT_S) == [1, 2, 3]
    assert rt.ask(agent, "gathered", {"n": 5}, timeout=WAIT_S) == [5, 6, 7]
    first, second = seen.loops
    assert first is second  # one loop per incarnation
    assert seen.threads == [rt.system.agents[agent].incarnation.thread] * 2  # type: ignore[union-attr]
    assert not first.is_closed() and not first.is_running()  # it runs only while a handler awaits
    rt.restart(agent)
    assert first.is_closed()  # closed as its incarnation ended
    assert rt.ask(agent, "gathered", {"n": 0}, timeout=WAIT_S) == [0, 1, 2]
    assert seen.loops[2] is not first
    rt.stop(agent)
    assert open_loops() == []


def test_async_handler_never_runs_on_the_callers_event_loop(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(mixed_kind(seen), "m")

    async def main() -> asyncio.AbstractEventLoop:
        assert await rt.aask(agent, "gathered", {"n": 1}, timeout=WAIT_S) == [1, 2, 3]
        return asyncio.get_running_loop()

    callers = asyncio.run(main())
    assert seen.loops[0] is not callers
    assert seen.threads[0] is not threading.current_thread()


def test_a_kind_mixes_sync_and_async_handlers_in_mailbox_order_one_at_a_time(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(mixed_kind(seen), "m")
    rt.send(agent, "slow")
    assert seen.entered.wait(WAIT_S)
    for i in range(3):
        rt.send(agent, "sync_record", {"value": f"s{i}"})
        rt.send(agent, "async_record", {"value": f"a{i}"})
    info = rt.get_agent(agent)
    assert info["state"] == "busy" and info["mailbox_depth"] == 6  # all queued behind `slow`
    seen.release.set()
    rt.ask(agent, "ping", timeout=WAIT_S)
    assert seen.log == ["slow-start", "slow-end", "s0", "a0", "s1", "a1", "s2", "a2"]


def test_a_blocking_call_in_an_async_handler_is_refused_and_its_awaitable_works(rt: Runtime) -> None:
    class Relay(Agent):
        @command
        async def blocking(self, to: str) -> Any:
            return rt.ask(to, "echo", {"x": 1}, timeout=WAIT_S)

        @command
        async def relay(self, to: str) -> Any:
            return await rt.aask(to, "echo", {"x": 2}, timeout=WAIT_S)

    relay, echo = rt.spawn(Relay, "relay"), rt.spawn("echo", "e")
    with pytest.raises(BlockingCallError, match="aask"):
        rt.ask(relay, "blocking", {"to": echo}, timeout=WAIT_S)
    assert rt.ask(relay, "relay", {"to": echo}, timeout=WAIT_S) == {"x": 2}


# -- async hooks -----------------------------------------------------------------------


def test_async_on_start_and_on_stop(rt: Runtime) -> None:
    log: list[str] = []

    class Hooked(Agent):
        async def on_start(self) -> None:
            await asyncio.sleep(0)
            self.ready = "ready"
            log.append(f"start {self.context.restart_count}")

        async def on_stop(self) -> None:
            await asyncio.sleep(0)
            log.append("stop")

        @command
        def get(self) -> str:
            return self.ready

    agent = rt.spawn(Hooked, "h")
    assert log == ["start 0"]  # spawn returns once the async on_start is done
    assert rt.ask(agent, "get", timeout=WAIT_S) == "ready"
    rt.restart(agent)
    rt.stop(agent)
    assert log == ["start 0", "stop", "start 1", "stop"]


def test_async_on_start_that_raises_fails_the_start_and_on_failure_may_be_async(rt: Runtime) -> None:
    failures: list[str] = []

    class Refuses(Agent):
        async def on_start(self) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("no")

    with pytest.raises(StartError, match="no"):
        rt.spawn(Refuses, "r")

    class Crashes(Agent):
        async def on_failure(self, *exc_info: Any) -> None:
            await asyncio.sleep(0)
            failures.append(type(exc_info[1]).__name__)

        @command
        async def crash(self) -> None:
            raise ValueError("boom")

    agent = rt.spawn(Crashes, "c")
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        with pytest.raises(AgentFailedError, match="boom"):
            rt.ask(agent, "crash", timeout=WAIT_S)
        restarted.get(WAIT_S)
    assert failures == ["ValueError"]


def test_a_task_left_behind_is_cancelled_when_the_loop_closes(rt: Runtime) -> None:
    seen = Seen()

    class Leaves(Agent):
        @command
        async def leave(self) -> None:
            async def background() -> None:
                try:
                    await asyncio.Event().wait()
                finally:
                    seen.unwound.set()

            self.task = asyncio.get_running_loop().create_task(background())
            await asyncio.sleep(0)  # it starts, then waits for ever

    agent = rt.spawn(Leaves, "l")
    rt.ask(agent, "leave", timeout=WAIT_S)
    rt.stop(agent)
    assert seen.unwound.is_set()  # the loop closed before stop returned


# -- durable agents from async code ------------------------------------------------------------


def durable_kind(calls: list[str], loops: list[asyncio.AbstractEventLoop]) -> type[Agent]:
    """A durable kind whose async handlers change, commit and effect; ``calls`` logs each run of an effect."""

    async def remote(tag: str) -> str:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        calls.append(tag)
        return f"did {tag}"

    class Notes(Agent):
        kind = "notes"
        durable = True

        @command
        async def add(self, note: str) -> int:
            await asyncio.sleep(0)
            self.state.setdefault("notes", []).append(note)
            return len(self.state["notes"])

        @command
        async def add_then_fail(self, note: str) -> None:
            self.state.setdefault("notes", []).append(note)
            assert self.commit() is True  # durable now, whatever happens next
            self.state["notes"].append("never")
            raise CommandError("failed after the commit", code="later")

        @command
        async def act(self, key: str) -> str:
            return str(await self.aeffect(key, remote, key))

        @command
        async def act_sync_effect(self, key: str) -> Any:
            return self.effect(key, remote, key)  # cannot wait here: refused, naming aeffect

        @command
        def act_from_sync(self, key: str) -> str:
            return str(self.effect(key, remote, key))  # waits on this incarnation's loop

        @command
        async def crash(self) -> None:
            raise RuntimeError("crash")

        @command
        async def loop(self) -> int:
            loops.append(asyncio.get_running_loop())
            return 0

    return Notes


def test_an_async_durable_handler_commits_its_state_before_the_reply(rt: Runtime) -> None:
    agent = rt.spawn(durable_kind([], []), "n")
    assert rt.ask(agent, "add", {"note": "a"}, timeout=WAIT_S) == 1
    assert rt.get_state(agent)["state"] == {"notes": ["a"]}
    with pytest.raises(CommandError, match="after the commit"):
        rt.ask(agent, "add_then_fail", {"note": "b"}, timeout=WAIT_S)
    got = rt.get_state(agent)
    assert got["state"] == {"notes": ["a", "b"]} and got["version"] == 2  # "never" was not committed
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        with pytest.raises(AgentFailedError):
            rt.ask(agent, "crash", timeout=WAIT_S)
        restarted.get(WAIT_S)
    assert rt.ask(agent, "add", {"note": "c"}, timeout=WAIT_S) == 3


def test_aeffect_runs_once_per_key_across_a_crash(rt: Runtime) -> None:
    calls: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []
    agent = rt.spawn(durable_kind(calls, loops), "n")
    assert rt.ask(agent, "act", {"key": "k1"}, timeout=WAIT_S) == "did k1"
    rt.ask(agent, "loop", timeout=WAIT_S)
    assert loops[0] is loops[1]  # the effect was awaited on the incarnation's own loop
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        with pytest.raises(AgentFailedError):
            rt.ask(agent, "crash", timeout=WAIT_S)
        restarted.get(WAIT_S)
    assert rt.ask(agent, "act", {"key": "k1"}, timeout=WAIT_S) == "did k1"  # recorded: not run again
    assert calls == ["k1"]


def test_effect_with_an_async_fn_inside_an_async_handler_is_refused_naming_aeffect(rt: Runtime) -> None:
    calls: list[str] = []
    agent = rt.spawn(durable_kind(calls, []), "n")
    with pytest.raises(SpecError, match=r"await self\.aeffect"):
        rt.ask(agent, "act_sync_effect", {"key": "k"}, timeout=WAIT_S)
    assert calls == []  # the coroutine never ran, nothing was recorded
    assert rt.ask(agent, "act", {"key": "k"}, timeout=WAIT_S) == "did k"
    assert rt.get_agent(agent)["restart_count"] == 0  # a refusal, not a crash


def test_effect_with_an_async_fn_from_a_sync_handler_runs_on_the_incarnations_loop(rt: Runtime) -> None:
    calls: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []
    agent = rt.spawn(durable_kind(calls, loops), "n")
    assert rt.ask(agent, "act_from_sync", {"key": "k"}, timeout=WAIT_S) == "did k"
    rt.ask(agent, "loop", timeout=WAIT_S)
    assert loops[0] is loops[1]  # not a nested asyncio.run
    assert rt.ask(agent, "act_from_sync", {"key": "k"}, timeout=WAIT_S) == "did k"
    assert calls == ["k"]
