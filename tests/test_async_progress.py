"""Progress: ``self.progress`` and generator handlers, read through ``ask_stream`` and ``astream``.

Nothing sleeps to synchronise: a handler that must wait for its reader waits on
a ``threading.Event`` the test sets; a round trip through the mailbox (``ping``)
says a command has finished.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

from _async_helpers import Seen, rt
from _helpers import WAIT_S
from mistersmith import (
    Agent,
    BlockingCallError,
    CommandError,
    CommandTimeoutError,
    Progress,
    Runtime,
    UnknownAgentError,
    command,
)
from mistersmith.actors import STREAM_MAXSIZE



def reporter_kind(seen: Seen) -> type[Agent]:
    class Reporter(Agent):
        kind = "reporter"

        @command
        def steps(self, n: int) -> str:
            for i in range(n):
                self.progress({"step": i}, done=i + 1, total=n)
            return "stepped"

        @command
        async def asteps(self, n: int) -> str:
            for i in range(n):
                await asyncio.sleep(0)
                self.progress(f"a{i}", done=i + 1, total=n)
            return "astepped"

        @command
        def tokens(self, words: list[Any]) -> Generator[Any, None, str]:
            for word in words:
                yield word
            yield Progress("last", done=1, total=1)  # a Progress goes as it is
            return " ".join(str(w) for w in words)

        @command
        async def atokens(self, words: list[Any]) -> AsyncIterator[Any]:
            for word in words:
                await asyncio.sleep(0)
                yield word

        @command
        def fails_midway(self) -> Iterator[int]:
            yield 1
            raise CommandError("gave up after one", code="midway")

        @command
        def waits(self) -> Iterator[str]:
            """Yields, then waits for the stop (``cancelled``), and again: only a stop ends it."""
            try:
                while True:
                    yield "tick"
                    seen.entered.set()
                    self.cancelled.wait(WAIT_S)
            finally:
                seen.unwound.set()

        @command
        def floods(self, n: int) -> int:
            for i in range(n):
                self.progress(i)
            return n

        @command
        def stalls(self) -> None:
            seen.entered.set()
            seen.release.wait(WAIT_S)

    return Reporter


@pytest.fixture
def agent(rt: Runtime) -> str:
    return rt.spawn(reporter_kind(Seen()), "r")


def test_progress_from_a_sync_handler_then_its_result(rt: Runtime, agent: str) -> None:
    stream = rt.ask_stream(agent, "steps", {"n": 3}, timeout=WAIT_S)
    assert list(stream) == [Progress({"step": i}, done=i + 1, total=3) for i in range(3)]
    assert stream.result() == "stepped"
    assert stream.result() == "stepped"  # as often as asked


def test_progress_from_an_async_handler(rt: Runtime, agent: str) -> None:
    stream = rt.ask_stream(agent, "asteps", {"n": 2}, timeout=WAIT_S)
    assert [p.data for p in stream] == ["a0", "a1"]
    assert stream.result() == "astepped"


def test_a_sync_generator_yields_progress_and_returns_the_result(rt: Runtime, agent: str) -> None:
    stream = rt.ask_stream(agent, "tokens", {"words": ["to", "be"]}, timeout=WAIT_S)
    assert list(stream) == [Progress("to"), Progress("be"), Progress("last", done=1, total=1)]
    assert stream.result() == "to be"


def test_an_async_generator_yields_progress_and_its_result_is_none(rt: Runtime, agent: str) -> None:
    stream = rt.ask_stream(agent, "atokens", {"words": [1, 2, 3]}, timeout=WAIT_S)
    assert [p.data for p in stream] == [1, 2, 3]
    assert stream.result() is None


def test_ask_ignores_progress_and_send_works(rt: Runtime, agent: str) -> None:
    assert rt.ask(agent, "tokens", {"words": ["a", "b"]}, timeout=WAIT_S) == "a b"
    assert rt.ask(agent, "steps", {"n": 2}, timeout=WAIT_S) == "stepped"
    assert rt.ask(agent, "atokens", {"words": ["x"]}, timeout=WAIT_S) is None
    rt.send(agent, "asteps", {"n": 2})
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_result_alone_waits_and_drops_the_progress(rt: Runtime, agent: str) -> None:
    assert rt.ask_stream(agent, "steps", {"n": 5}, timeout=WAIT_S).result() == "stepped"


def test_an_error_midway_ends_the_iteration_after_the_progress_before_it(rt: Runtime, agent: str) -> None:
    stream = rt.ask_stream(agent, "fails_midway", timeout=WAIT_S)
    got: list[Progress] = []
    with pytest.raises(CommandError, match="gave up"):
        for item in stream:
            got.append(item)
    assert got == [Progress(1)]
    with pytest.raises(CommandError, match="gave up"):
        stream.result()
    assert rt.get_agent(agent)["restart_count"] == 0


def test_a_stream_keeps_the_newest_items_and_counts_what_it_dropped(rt: Runtime, agent: str) -> None:
    n = STREAM_MAXSIZE + 500
    stream = rt.ask_stream(agent, "floods", {"n": n}, timeout=WAIT_S)
    rt.ask(agent, "ping", timeout=WAIT_S)  # `floods` has finished: every item arrived before we read
    items = list(stream)
    assert len(items) == STREAM_MAXSIZE and stream.dropped == 500
    assert items[0].data == 500 and items[-1].data == n - 1
    assert stream.result() == n


def test_a_stream_times_out_as_ask_does(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(reporter_kind(seen), "r")
    try:
        stream = rt.ask_stream(agent, "stalls", timeout=0.05)
        assert seen.entered.wait(WAIT_S)
        with pytest.raises(CommandTimeoutError):
            list(stream)
        with pytest.raises(CommandTimeoutError):
            stream.result()
    finally:
        seen.release.set()


def test_a_sync_generator_is_closed_at_its_next_yield_when_the_agent_stops(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(reporter_kind(seen), "r", shutdown_s=WAIT_S)
    stream = rt.ask_stream(agent, "waits", timeout=WAIT_S)
    assert next(stream) == Progress("tick")
    assert seen.entered.wait(WAIT_S)
    rt.stop(agent)  # sets `cancelled`: the generator wakes, yields, and is closed there
    assert seen.unwound.is_set()
    with pytest.raises(UnknownAgentError):
        list(stream)
    assert rt.stats()["leaked_threads"] == 0


def test_ask_stream_on_an_event_loop_is_refused_naming_astream(rt: Runtime, agent: str) -> None:
    async def main() -> None:
        with pytest.raises(BlockingCallError, match="astream"):
            rt.ask_stream(agent, "steps", {"n": 1}, timeout=WAIT_S)

    asyncio.run(main())


def test_astream_moves_progress_to_the_event_loop(rt: Runtime, agent: str) -> None:
    async def main() -> None:
        loop_thread = threading.current_thread()
        stream = rt.astream(agent, "tokens", {"words": ["x", "y"]}, timeout=WAIT_S)
        got = [item async for item in stream]
        assert got == [Progress("x"), Progress("y"), Progress("last", done=1, total=1)]
        assert await stream.result() == "x y"
        stream = rt.astream(agent, "asteps", {"n": 3}, timeout=WAIT_S)
        assert [item.done async for item in stream] == [1, 2, 3]
        assert await stream.result() == "astepped"
        assert await rt.astream(agent, "atokens", {"words": [1]}, timeout=WAIT_S).result() is None
        assert threading.current_thread() is loop_thread

    asyncio.run(main())


def test_astream_raises_the_handlers_error_and_refusals_at_once(rt: Runtime, agent: str) -> None:
    async def main() -> None:
        stream = rt.astream(agent, "fails_midway", timeout=WAIT_S)
        got: list[Progress] = []
        with pytest.raises(CommandError, match="gave up"):
            async for item in stream:
                got.append(item)
        assert got == [Progress(1)]
        with pytest.raises(CommandError):
            await stream.result()
        with pytest.raises(UnknownAgentError):
            rt.astream("nobody", "steps", timeout=WAIT_S)

    asyncio.run(main())


def test_astream_times_out(rt: Runtime) -> None:
    seen = Seen()
    agent = rt.spawn(reporter_kind(seen), "r")

    async def main() -> None:
        stream = rt.astream(agent, "stalls", timeout=0.05)
        with pytest.raises(CommandTimeoutError):
            async for _ in stream:
                pass

    try:
        asyncio.run(main())
    finally:
        seen.release.set()
