"""``EagerLoop``: a command's first step is taken at once, and it is still a real task on a running loop.

What a handler may do before its first suspension must work as it does on a
plain asyncio loop: ``current_task()``, ``get_running_loop()``,
``asyncio.timeout()`` (which captures the current task to cancel it later),
async generators (finalised by the loop's hooks) and ``create_task``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from mistersmith.actors._aio import ANYTHING, COMMAND, EagerLoop, IncarnationLoop


@pytest.fixture
def loop() -> Iterator[IncarnationLoop]:
    lp = IncarnationLoop("eager-test")
    try:
        yield lp
    finally:
        lp.close()


def test_a_handler_that_does_not_suspend_never_runs_the_loop(loop: IncarnationLoop) -> None:
    seen: dict[str, Any] = {}

    async def handler() -> str:
        seen["task"] = asyncio.current_task()
        seen["loop"] = asyncio.get_running_loop()
        return "done"

    ran: list[int] = []
    original = EagerLoop.run_forever

    def counting(self: EagerLoop) -> None:
        ran.append(1)
        original(self)

    EagerLoop.run_forever = counting  # type: ignore[method-assign]
    try:
        assert loop.run(handler(), COMMAND) == "done"
    finally:
        EagerLoop.run_forever = original  # type: ignore[method-assign]
    assert ran == []
    assert isinstance(seen["task"], asyncio.Task) and seen["task"].done()
    assert isinstance(seen["loop"], EagerLoop)
    with pytest.raises(RuntimeError):  # the running loop was only set for the step
        asyncio.get_running_loop()


def test_a_handler_that_suspends_goes_on_in_the_same_task(loop: IncarnationLoop) -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    async def handler() -> int:
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0)
        tasks.append(asyncio.current_task())
        return await asyncio.to_thread(lambda: 42)

    assert loop.run(handler(), COMMAND) == 42
    assert tasks[0] is not None and tasks[0] is tasks[1]


def test_a_timeout_entered_in_the_first_step_cancels_the_right_task(loop: IncarnationLoop) -> None:
    async def handler() -> str:
        try:
            async with asyncio.timeout(0.01):  # captures current_task() before any suspension
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not reached"

    assert loop.run(handler(), COMMAND) == "timed out"
    assert loop.run(handler(), COMMAND) == "timed out"  # and again, on the same loop


def test_an_exception_from_the_first_step_is_raised(loop: IncarnationLoop) -> None:
    async def handler() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        loop.run(handler(), COMMAND)


def test_a_cancel_before_it_begins_means_it_never_runs(loop: IncarnationLoop) -> None:
    ran = threading.Event()

    async def handler() -> None:
        ran.set()

    loop.run(asyncio.sleep(0), COMMAND)  # make the loop
    loop.cancel_threadsafe(COMMAND)
    with pytest.raises(asyncio.CancelledError):
        loop.run(handler(), COMMAND)
    assert not ran.is_set()
    loop.run(handler(), ANYTHING)  # a hook still runs
    assert ran.is_set()


def test_a_cancel_from_another_thread_reaches_a_command_that_suspended(loop: IncarnationLoop) -> None:
    entered = threading.Event()

    async def handler() -> None:
        entered.set()
        await asyncio.Event().wait()

    canceller = threading.Thread(target=lambda: entered.wait(10) and loop.cancel_command_threadsafe())
    canceller.start()
    try:
        with pytest.raises(asyncio.CancelledError):
            loop.run(handler(), COMMAND)
    finally:
        canceller.join(10)
    loop.command_done()


def test_an_async_generator_begun_in_the_first_step_is_finalised_by_the_loop(loop: IncarnationLoop) -> None:
    closed = threading.Event()

    async def tokens() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)  # only a loop-driven aclose can run this
            closed.set()

    kept: list[AsyncIterator[int]] = []

    async def handler() -> int:
        gen = tokens()
        kept.append(gen)
        return await gen.__anext__()  # left suspended at its first yield

    assert loop.run(handler(), COMMAND) == 1
    loop.close()  # shutdown_asyncgens: the generator was registered by the loop's hook in the eager step
    assert closed.is_set()


def test_tasks_created_in_the_first_step_are_scheduled_normally(loop: IncarnationLoop) -> None:
    async def child() -> int:
        return 7

    async def handler() -> int:
        task = asyncio.create_task(child())  # not kept back: only the command's own first step is
        return await task

    assert loop.run(handler(), COMMAND) == 7
