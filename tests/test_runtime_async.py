"""The asyncio face of the Runtime: awaitable twins that never block the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from _helpers import WAIT_S, Gate, Worker, blocker_kind
from mistersmith import (
    AgentFailedError,
    BlockingCallError,
    CommandTimeoutError,
    FakeClock,
    Runtime,
    SupervisorSpec,
    UnknownAgentError,
    command,
)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def new_runtime() -> Runtime:
    return Runtime(clock=FakeClock(), root=SupervisorSpec("root", intensity=10), kinds={"worker": Worker})


def test_async_context_manager_and_awaitable_twins() -> None:
    async def main() -> Runtime:
        async with new_runtime() as rt:
            agent = await rt.aspawn("worker", "a")
            assert await rt.aask(agent, "echo", {"x": 1}, timeout=WAIT_S) == {"x": 1}
            await rt.asend(agent, "record", {"value": 7})
            assert await rt.aask(agent, "recorded", timeout=WAIT_S) == [7]
            stream = rt.event_stream(agent_id=agent)
            with pytest.raises(AgentFailedError):
                await rt.aask(agent, "exit", {"how": "crash"}, timeout=WAIT_S)
            assert (await stream.next(WAIT_S)).event_type == "failed"
            assert (await stream.next(WAIT_S)).event_type == "restarted"
            await rt.arestart(agent)
            assert (await stream.next(WAIT_S)).event_type == "stopped"
            restarted = await stream.next(WAIT_S)
            assert restarted.event_type == "restarted" and restarted.restart_count == 2
            path = await rt.aadd_supervisor(SupervisorSpec("s"))
            assert path == "root/s"
            await rt.aspawn("worker", "b", supervisor=path)
            await rt.astop(agent)
            assert (await stream.next(WAIT_S)).event_type == "stopped"
            with pytest.raises(TimeoutError):
                await stream.next(0.01)
            stream.close()
            with pytest.raises(UnknownAgentError):
                await rt.aask(agent, "ping", timeout=WAIT_S)
            assert [a["id"] for a in rt.list_agents()] == ["b"]
            return rt

    rt = asyncio.run(main())
    assert rt.closed


class LoopFlag:
    """An ``asyncio.Event`` of the running loop that any thread may set (it crosses with call_soon_threadsafe)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        await asyncio.wait_for(self._event.wait(), WAIT_S)


def test_aask_does_not_block_the_loop() -> None:
    """The handler waits for a gate that only the loop opens: a blocked loop would open it too late."""
    gate = threading.Event()
    began: dict[str, LoopFlag] = {}

    class Gated(Worker):
        @command("wait_gate")
        def wait_gate(self) -> dict[str, bool]:
            began["handler"].set()
            return {"opened": gate.wait(2.0)}

    async def main() -> None:
        began["handler"] = LoopFlag()
        async with new_runtime() as rt:
            agent = await rt.aspawn(Gated)
            call = asyncio.ensure_future(rt.aask(agent, "wait_gate", timeout=WAIT_S))
            await began["handler"].wait()  # the handler runs, and the loop is free to see it
            gate.set()  # runs on the loop, while aask is waiting
            assert await call == {"opened": True}

    run(main)


def test_aspawn_and_astop_do_not_block_the_loop() -> None:
    start_gate, stop_gate = threading.Event(), threading.Event()
    seen: list[str] = []
    began: dict[str, LoopFlag] = {}

    class Gated(Worker):
        def on_start(self) -> None:
            began["start"].set()
            seen.append(f"start saw gate={start_gate.wait(2.0)}")

        def on_stop(self) -> None:
            began["stop"].set()
            seen.append(f"stop saw gate={stop_gate.wait(2.0)}")

    async def main() -> None:
        began.update(start=LoopFlag(), stop=LoopFlag())
        async with new_runtime() as rt:
            spawn = asyncio.ensure_future(rt.aspawn(Gated, "g"))
            await began["start"].wait()  # on_start runs, and the loop is free to see it
            start_gate.set()  # only reachable if aspawn yielded to the loop
            assert await spawn == "g"
            stop = asyncio.ensure_future(rt.astop("g"))
            await began["stop"].wait()
            stop_gate.set()
            await stop

    run(main)
    assert seen == ["start saw gate=True", "stop saw gate=True"]


def test_aask_timeout_and_errors() -> None:
    async def main() -> None:
        async with new_runtime() as rt:
            gate = Gate()
            agent = await rt.aspawn(blocker_kind(gate))
            await rt.asend(agent, "block")
            with pytest.raises(CommandTimeoutError) as err:
                await rt.aask(agent, "ping", timeout=0.05)
            assert err.value.agent_id == agent and err.value.timeout_s == 0.05
            with pytest.raises(UnknownAgentError):
                await rt.aask("ghost", "ping", timeout=WAIT_S)

    run(main)


def test_ask_future_queues_at_once_in_call_order() -> None:
    async def main() -> None:
        async with new_runtime() as rt:
            gate = Gate()
            blocked = await rt.aspawn(blocker_kind(gate))
            await rt.asend(blocked, "block_hard")
            with pytest.raises(CommandTimeoutError):
                await rt.ask_future(blocked, "ping", timeout=0.05)
            pings = [rt.ask_future(blocked, "ping", timeout=WAIT_S) for _ in range(3)]
            assert rt.get_agent(blocked)["mailbox_depth"] == 4  # queued before anything was awaited
            gate.release.set()
            await asyncio.gather(*pings)
            agent = await rt.aspawn("worker", "a")
            records = [rt.ask_future(agent, "record", {"value": i}, timeout=WAIT_S) for i in range(5)]
            await asyncio.gather(*records)
            assert await rt.aask(agent, "recorded", timeout=WAIT_S) == [0, 1, 2, 3, 4]
            with pytest.raises(UnknownAgentError):  # a refusal raises at once, not in the future
                rt.ask_future("ghost", "ping", timeout=WAIT_S)

    run(main)


BLOCKING: list[tuple[str, Callable[[Runtime], Any], str]] = [
    ("ask", lambda rt: rt.ask("a", "ping", timeout=1), "await runtime.aask(...)"),
    ("spawn", lambda rt: rt.spawn("worker"), "await runtime.aspawn(...)"),
    ("stop", lambda rt: rt.stop("a"), "await runtime.astop(...)"),
    ("restart", lambda rt: rt.restart("a"), "await runtime.arestart(...)"),
    ("add_supervisor", lambda rt: rt.add_supervisor(SupervisorSpec("s")), "await runtime.aadd_supervisor(...)"),
    ("close", lambda rt: rt.close(), "await runtime.aclose()"),
]


@pytest.mark.parametrize(("name", "call", "instead"), BLOCKING, ids=[b[0] for b in BLOCKING])
def test_blocking_calls_on_the_loop_say_what_to_use(name: str, call: Callable[[Runtime], Any], instead: str) -> None:
    async def main() -> None:
        async with new_runtime() as rt:
            await rt.aspawn("worker", "a")
            with pytest.raises(BlockingCallError) as err:
                call(rt)
            assert f"use `{instead}` here" in str(err.value)
            assert err.value.code == "blocking_call" and err.value.instead == instead
            # Nothing happened, and the runtime still works.
            assert await rt.aask("a", "ping", timeout=WAIT_S) == {"pong": True, "agent_id": "a"}
            assert [a["id"] for a in rt.list_agents()] == ["a"]
            rt.send("a", "record", {"value": 1})  # send never blocks: fine on the loop
            assert await rt.aask("a", "recorded", timeout=WAIT_S) == [1]

    run(main)


def test_sync_calls_work_from_a_plain_thread_while_a_loop_runs_elsewhere() -> None:
    rt = new_runtime()
    try:
        agent = rt.spawn("worker")

        async def main() -> Any:
            return await asyncio.to_thread(rt.ask, agent, "echo", {"n": 1}, timeout=WAIT_S)

        assert asyncio.run(main()) == {"n": 1}
    finally:
        rt.close()


def test_wait_closed_on_the_loop_is_refused() -> None:
    """wait_closed blocks for up to timeout_s: on the loop it must be refused like ask and close."""

    async def main() -> None:
        async with new_runtime() as rt:
            with pytest.raises(BlockingCallError):
                rt.wait_closed(0.05)

    run(main)


def test_loop_reply_times_out_once_and_ignores_late_replies() -> None:
    from mistersmith.crossing import LoopReply

    async def main() -> None:
        late = LoopReply(0.01, lambda: CommandTimeoutError("a", "ping", 0.01))
        with pytest.raises(CommandTimeoutError):
            await late.future
        crossed = LoopFlag()
        # Callbacks scheduled from one thread run in order: once ``crossed`` is set, the late reply's
        # crossing callback has run (and it must have left the future alone).
        threading.Thread(target=lambda: (late.set("too late"), crossed.set())).start()
        await crossed.wait()
        assert isinstance(late.future.exception(), CommandTimeoutError)
        quick = LoopReply(WAIT_S)
        threading.Thread(target=quick.set, args=("on time",)).start()
        assert await quick.future == "on time"
        assert quick._timer is not None and quick._timer.cancelled()

    run(main)


def test_event_stream_with_history_has_every_event_once_in_seq_order_while_threads_emit() -> None:
    """Made mid-flight: the kept events up to the bus's delivered seq, then the live ones past it."""

    async def main() -> None:
        async with new_runtime() as rt:
            halfway = threading.Event()

            def emit(n: int) -> None:
                for i in range(300):
                    rt.bus.emit("paused", supervisor="root", agent_id=f"x{n}")
                    if i == 100:
                        halfway.set()

            threads = [threading.Thread(target=emit, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()
            assert await asyncio.to_thread(halfway.wait, WAIT_S)
            stream = rt.event_stream(include_history=True)
            for thread in threads:
                await asyncio.to_thread(thread.join, WAIT_S)
            last = rt.bus.delivered_seq
            assert last == 1 + 900  # the root's started, then ours
            assert [(await stream.next(WAIT_S)).seq for _ in range(last)] == list(range(1, last + 1))
            with pytest.raises(TimeoutError):
                await stream.next(0.01)
            stream.close()

    run(main)
