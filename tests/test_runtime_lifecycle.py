"""A Runtime's defaults and its end: crashing agents do not stop a bare Runtime, and when a root
does give up, the program hears of it (the context managers raise, calls say the runtime closed)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from _helpers import WAIT_S

from mistersmith import (
    Agent,
    AgentFailedError,
    FatalError,
    Runtime,
    RuntimeClosedError,
    SupervisorSpec,
    command,
)


def _crash(rt: Runtime, agent_id: str) -> None:
    with pytest.raises(AgentFailedError):
        rt.ask(agent_id, "fail", timeout=WAIT_S)


def test_a_bare_runtime_keeps_serving_agents_that_crash() -> None:
    # 20 different agents each crash twice within about 2 s: OTP's 1-in-5 root would have
    # stopped the whole runtime at the second crash; the default root backs the agents off.
    with Runtime() as rt:
        agents = [rt.spawn("echo", f"a{i}") for i in range(20)]
        for _ in range(2):
            for agent in agents:
                _crash(rt, agent)  # an ask right after waits for the restart (the stash)
            for agent in agents:
                assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
        assert not rt.closed and rt.fatal_error is None
        assert all(rt.get_agent(a)["restart_count"] == 2 for a in agents)
        assert rt.ask("a7", "echo", {"still": "here"}, timeout=WAIT_S) == {"still": "here"}


def test_otp_s_exact_root_is_one_argument_away() -> None:
    rt = Runtime(root=SupervisorSpec("root"))
    try:
        a, b = rt.spawn("echo", "a"), rt.spawn("echo", "b")
        _crash(rt, a)
        _crash(rt, b)  # the second restart within 5 s: the root gives up
        assert rt.wait_closed(WAIT_S)
        assert isinstance(rt.fatal_error, FatalError)
    finally:
        rt.close()


def test_the_with_block_raises_the_fatal_error_with_its_cause() -> None:
    with pytest.raises(FatalError) as err:
        with Runtime(root=SupervisorSpec("root")) as rt:
            _crash(rt, rt.spawn("echo", "a"))
            _crash(rt, rt.spawn("echo", "b"))
            assert rt.wait_closed(WAIT_S)
    assert isinstance(err.value.__cause__, RuntimeError)
    assert "echo was told to fail" in str(err.value.__cause__)


def test_the_async_with_block_raises_the_fatal_error_with_its_cause() -> None:
    async def main() -> None:
        async with Runtime(root=SupervisorSpec("root")) as rt:
            for name in ("a", "b"):
                agent = await rt.aspawn("echo", name)
                with pytest.raises(AgentFailedError):
                    await rt.aask(agent, "fail", timeout=WAIT_S)
            assert await rt.await_closed(WAIT_S)

    with pytest.raises(FatalError) as err:
        asyncio.run(main())
    assert isinstance(err.value.__cause__, RuntimeError)


def test_an_error_inside_the_block_is_not_replaced() -> None:
    with pytest.raises(KeyError):
        with Runtime(root=SupervisorSpec("root")) as rt:
            _crash(rt, rt.spawn("echo", "a"))
            _crash(rt, rt.spawn("echo", "b"))
            assert rt.wait_closed(WAIT_S)
            raise KeyError("mine")


class _SlowToStop(Agent):
    entered = threading.Event()
    release = threading.Event()

    def on_stop(self) -> None:
        type(self).entered.set()
        type(self).release.wait(WAIT_S)

    @command
    def noop(self) -> dict[str, Any]:
        return {}


def test_calls_say_the_runtime_is_closing_from_the_moment_the_root_gives_up() -> None:
    _SlowToStop.entered.clear()
    _SlowToStop.release.clear()
    rt = Runtime(root=SupervisorSpec("root"), kinds={"slow": _SlowToStop})
    try:
        rt.spawn("slow", "slow")
        a, b = rt.spawn("echo", "a"), rt.spawn("echo", "b")
        _crash(rt, a)
        _crash(rt, b)
        # The root stops its children in reverse start order: b and a are gone while slow's
        # on_stop still runs, and the runtime is not closed yet.
        assert _SlowToStop.entered.wait(WAIT_S)
        assert not rt.closed
        for call in (lambda: rt.ask("a", "ping", timeout=WAIT_S), lambda: rt.send("b", "ping"),
                     lambda: rt.spawn("echo", "c"), lambda: rt.stop("b")):
            with pytest.raises(RuntimeClosedError):
                call()
    finally:
        _SlowToStop.release.set()
        rt.close()


def test_a_crash_the_program_caught_prints_nothing() -> None:
    import subprocess
    import sys

    program = (
        "from mistersmith import AgentFailedError, Runtime\n"
        "with Runtime() as rt:\n"
        "    a = rt.spawn('echo')\n"
        "    try:\n"
        "        rt.ask(a, 'fail', timeout=10)\n"
        "    except AgentFailedError:\n"
        "        print('caught')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "caught\n"
    assert done.stderr == "", done.stderr
    # ... while an application that configures logging still sees the records
    shown = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig()\n" + program],
                           capture_output=True, text=True, timeout=60)
    assert "echo was told to fail" in shown.stderr


def test_hung_dynamic_agents_are_stopped_together_not_one_after_another() -> None:
    entered = [threading.Event(), threading.Event()]
    gate = threading.Event()

    class Hangs(Agent):
        def on_stop(self) -> None:
            entered[int(self.config["n"])].set()
            gate.wait(WAIT_S * 3)

    rt = Runtime(kinds={"hangs": Hangs})
    for n in (0, 1):
        rt.spawn("hangs", f"h{n}", {"n": n}, shutdown_s=WAIT_S * 2)
    closer = threading.Thread(target=rt.close, name="test-closer")
    closer.start()
    try:
        # One after another, the second on_stop would start only after the first's shutdown_s
        # (20 s): together, both run while neither has returned.
        assert entered[0].wait(WAIT_S) and entered[1].wait(WAIT_S)
    finally:
        gate.set()
        closer.join(WAIT_S * 3)
    assert not closer.is_alive() and rt.closed


def test_static_children_still_stop_one_by_one_in_reverse_start_order() -> None:
    from mistersmith import ChildSpec

    order: list[str] = []

    class Logs(Agent):
        def on_stop(self) -> None:
            order.append(self.agent_id)

    rt = Runtime(kinds={"logs": Logs}, root=SupervisorSpec(
        "root", children=tuple(ChildSpec(f"s{i}", "logs") for i in range(4))))
    rt.spawn("logs", "d1")
    rt.spawn("logs", "d2")
    rt.close()
    assert order[:2] in (["d2", "d1"], ["d1", "d2"])  # dynamic: one step, together
    assert order[2:] == ["s3", "s2", "s1", "s0"]  # static: OTP's reverse start order, one at a time


def test_an_unknown_kind_is_named_with_the_kinds_there_are() -> None:
    from mistersmith import SpecError

    with Runtime() as rt:
        with pytest.raises(SpecError) as err:
            rt.spawn("nope")
        assert "kind='nope'" in str(err.value) and "use a registered kind (echo)" in str(err.value)
        assert "child" not in str(err.value)  # no generated child id ('nope-da7304d3') in the message
