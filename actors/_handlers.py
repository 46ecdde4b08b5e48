"""``HandlerMethods``: calling a handler of any shape, and the progress it reports.

A command handler is one of four shapes (``_command.SHAPES``), and the
incarnation's thread runs each to its end before it takes the next message:

- ``def``: called; if it returns a coroutine, that is awaited on the loop;
- ``async def``: awaited on the incarnation's own loop (``_aio``);
- a generator (``def`` with ``yield``): each yielded item is progress, and
  ``return x`` (``StopIteration.value``) is the result. Once ``self.cancelled``
  is set it is closed at its next ``yield`` (its ``finally`` runs there);
- an async generator (``async def`` with ``yield``): each yielded item is
  progress; it cannot return a value, so its result is ``None`` (an
  ``async def`` that calls ``self.progress(...)`` and returns is the shape for
  a result too).

A yielded ``Progress`` goes as it is; any other item goes as ``Progress(item)``.
Hooks (``on_start``, ``on_stop``, ``on_failure``) may be ``async def`` too.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._aio import ANYTHING, COMMAND, IncarnationLoop
from ._command import ASYNC, GENERATOR, SYNC
from ._progress import Progress

__all__ = ["RUNNING", "HandlerMethods", "ProgressSink"]

ProgressSink = Callable[[Progress], None]

RUNNING: contextvars.ContextVar[Any] = contextvars.ContextVar("mistersmith_running_command", default=None)
"""In a kind with ``concurrency`` > 1: the ``_concurrent.Slot`` of the command this task runs (its own
progress sink and clock), so ``self.progress`` reaches the right caller."""


class HandlerMethods:
    """A mixin of ``Agent``: run handlers and hooks of any shape; report progress."""

    if TYPE_CHECKING:
        cancelled: threading.Event
        _aio: IncarnationLoop
        _progress_sink: ProgressSink | None
        _progress_at: float | None
        _now: Callable[[], float]

    def progress(self, data: Any = None, *, done: float | None = None, total: float | None = None) -> None:
        """Report how the running command goes, to its caller if it reads a stream (``Runtime.ask_stream``,
        ``astream``); otherwise (``ask``, ``send``, or no command running) it goes nowhere.

        Call it from a handler, sync or async (in this incarnation's thread); it never blocks. It also
        tells the agent's ``idle_timeout_s`` that the command is alive.
        """
        sink = self._sink_now()
        if sink is not None:
            sink(Progress(data, done, total))

    def _sink_now(self) -> ProgressSink | None:
        """The running command's progress sink (its slot's, in a concurrent kind); stamps its progress time."""
        self._progress_at = now = self._now()
        slot = RUNNING.get()
        if slot is None:
            return self._progress_sink
        slot.progress_at = now
        sink: ProgressSink | None = slot.sink
        return sink

    def _call_handler(self, fn: Callable[..., Any], shape: str, kwargs: Mapping[str, Any]) -> Any:
        """Run one handler to its end, in this thread; its result, or what it raised."""
        if shape == SYNC:
            result = fn(**kwargs)
            if inspect.iscoroutine(result):  # a plain def handing back a coroutine (a wrapper, a partial...)
                return self._aio.run(result, COMMAND)
            return result
        if shape == ASYNC:
            return self._aio.run(fn(**kwargs), COMMAND)
        if shape == GENERATOR:
            return self._drain(fn(**kwargs))
        return self._aio.run(self._adrain(fn(**kwargs)), COMMAND)  # ASYNC_GENERATOR

    def _run_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        """Run a hook, sync or async, to its end (cancelled only if the incarnation is given up on)."""
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            self._aio.run(_awaited(outcome), ANYTHING)

    def _await_here(self, awaitable: Awaitable[Any]) -> Any:
        """Wait for ``awaitable`` on this incarnation's loop, from sync code in its thread (``effect``)."""
        return self._aio.run(_awaited(awaitable), COMMAND)

    def _yielded(self, item: Any) -> None:
        sink = self._sink_now()
        if sink is not None:
            sink(item if type(item) is Progress else Progress(item))

    def _drain(self, gen: Iterator[Any]) -> Any:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            self._yielded(item)
            if self.cancelled.is_set():
                close = getattr(gen, "close", None)
                if close is not None:
                    close()
                raise asyncio.CancelledError("the incarnation is stopping")

    async def _adrain(self, agen: AsyncIterator[Any]) -> None:
        try:
            async for item in agen:
                self._yielded(item)
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
