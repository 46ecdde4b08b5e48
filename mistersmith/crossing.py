"""The one crossing between actor threads and an asyncio event loop.

Nothing else in MisterSmith moves work or results between the two worlds:

- loop -> actor: callers put an envelope in a mailbox (non-blocking; done by
  the Runtime); the reply slot they pass is a ``LoopReply`` (a ``LoopStream``
  when they read the command's progress too);
- actor -> loop: a ``LoopReply`` (or an ``EventStream``) resolves its asyncio
  future with ``call_soon_threadsafe``; a ``LoopStream`` moves each
  ``Progress`` item the same way, before the result;
- blocking work an async caller needs (closing the runtime) runs in a
  short-lived thread whose outcome crosses back the same way.

A blocking call made on a thread that runs an event loop is refused with
``BlockingCallError`` naming the awaitable to use instead (``forbid_blocking``).

Where the boundary is not: an agent incarnation with ``async def`` handlers
runs them on an event loop of its own, in its own thread
(``mistersmith.actors._aio``). That loop is the agent's, not the node's;
cancelling its task from the supervisor's thread
(``IncarnationLoop.cancel_threadsafe``) is part of the agent's own machinery.
An async handler awaiting ``runtime.aask(...)`` uses the slots here, with its
own loop as "the loop".
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mistersmith.actors import STREAM_MAXSIZE, Progress
from mistersmith.errors import BlockingCallError
from mistersmith.supervisors import EventBus, SupervisionEvent

__all__ = ["EventStream", "LoopReply", "LoopStream", "LoopThread", "forbid_blocking", "run_in_thread"]

logger = logging.getLogger("mistersmith.crossing")

T = TypeVar("T")


def forbid_blocking(call: str, instead: str) -> None:
    """Raise ``BlockingCallError`` if this thread is running an asyncio loop."""
    if asyncio._get_running_loop() is not None:
        raise BlockingCallError(call, instead)


class LoopReply:
    """A reply slot that actor threads fill and the event loop awaits (``future``).

    With ``timeout_s``, the future fails with ``on_timeout()`` if no reply
    came within that time (a timer on the loop, cancelled by the reply).
    """

    __slots__ = ("_done", "_loop", "_timer", "future", "progress")

    def __init__(self, timeout_s: float | None = None, on_timeout: Callable[[], Exception] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self._loop.create_future()
        self.progress: Callable[[Progress], None] | None = None  # a plain reply drops progress
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        if timeout_s is not None:
            self._timer = self._loop.call_later(timeout_s, self._expire, on_timeout or TimeoutError)

    def set(self, value: Any = None) -> None:
        self._cross(value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        self._cross(None, exc_info[1])

    def _cross(self, value: Any, error: BaseException | None) -> None:
        if self._done:
            raise queue.Full
        self._done = True
        try:
            self._loop.call_soon_threadsafe(self._resolve, value, error)
        except RuntimeError:  # the loop is closed; nobody is waiting any more
            pass

    def _resolve(self, value: Any, error: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.future.done():
            return
        if error is None:
            self.future.set_result(value)
        else:
            self.future.set_exception(error)

    def cancel(self) -> None:
        """Nobody will wait: drop the timer and cancel the future (a late reply is ignored)."""
        if self._timer is not None:
            self._timer.cancel()
        self.future.cancel()

    def _expire(self, on_timeout: Callable[[], Exception]) -> None:
        if not self.future.done():
            self.future.set_exception(on_timeout())


class LoopStream(LoopReply):
    """A ``LoopReply`` that also carries the command's progress to the loop (``Runtime.astream``).

    ``async for item in stream`` yields each ``Progress`` as it comes; the
    iteration ends when the command has finished, and raises its error if it
    failed (``CommandTimeoutError`` past the timeout included). Then
    ``await stream.result()`` returns the result (or raises the same error);
    awaited without iterating, it drops the progress. Keeps at most ``maxsize``
    unread items, dropping the oldest (``dropped`` counts them): the agent
    never waits for a slow reader.
    """

    __slots__ = ("_crossing", "_items", "_ready", "_scheduled", "dropped", "maxsize")

    def __init__(
        self, timeout_s: float | None, on_timeout: Callable[[], Exception] | None = None, maxsize: int = STREAM_MAXSIZE
    ) -> None:
        super().__init__(timeout_s, on_timeout)
        self._items: collections.deque[Progress] = collections.deque()
        self._crossing: collections.deque[Progress] = collections.deque()  # sent by the agent, not yet on the loop
        self._scheduled = False
        self._ready = asyncio.Event()
        self.maxsize = maxsize
        self.dropped = 0
        self.progress = self._from_thread
        self.future.add_done_callback(lambda _: self._ready.set())

    def _from_thread(self, item: Progress) -> None:
        """In the agent's thread: move one item to the loop (dropped once the result went).

        Items cross in batches: the first of a batch schedules one call on the loop, which takes
        every item sent until it runs (a fast producer wakes the loop once, not once per item).
        The result crosses after its items, in order (it is scheduled after them)."""
        if self._done:
            return
        self._crossing.append(item)
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._arrive)
        except RuntimeError:  # the loop is closed; nobody is reading any more
            pass

    def _arrive(self) -> None:
        self._scheduled = False
        crossing, items = self._crossing, self._items
        if self.future.done():
            crossing.clear()
            return
        while crossing:
            if len(items) >= self.maxsize:
                items.popleft()
                self.dropped += 1
            items.append(crossing.popleft())
        self._ready.set()

    def __aiter__(self) -> LoopStream:
        return self

    async def __anext__(self) -> Progress:
        while not self._items:
            if self.future.done():
                error = self.future.exception()  # raises CancelledError if it was cancelled
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def result(self) -> Any:
        """The command's result, once it has finished (unread progress is dropped); raises its error."""
        self._items.clear()
        return await self.future


async def run_in_thread(fn: Callable[[], T], name: str) -> T:
    """Run a blocking ``fn`` in its own short-lived thread and await its outcome."""
    reply = LoopReply()

    def target() -> None:
        try:
            reply.set(fn())
        except BaseException as exc:
            reply.set_exception((type(exc), exc, exc.__traceback__))

    threading.Thread(target=target, name=name, daemon=True).start()
    result: T = await reply.future
    return result


class EventStream:
    """Supervision events as an async iterator: ``async for event in stream``.

    Holds at most ``maxsize`` events; past that the oldest are dropped,
    counted in ``dropped`` and logged.

    ``history`` (e.g. ``MemorySink.events``) makes the stream begin with the
    events already delivered before it subscribed: it subscribes, reads
    ``bus.delivered_seq`` and queues the matching events of ``history()``
    up to that seq (the newest ``maxsize`` of them), then skips any live
    event at or below it. So each event comes once, in ``seq`` order, and
    only once durable; what ``history`` no longer keeps is not there.
    """

    def __init__(
        self, bus: EventBus, maxsize: int,
        history: Callable[[], list[SupervisionEvent]] | None = None, **filters: Any,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[SupervisionEvent] = collections.deque()
        self._ready = asyncio.Event()
        self.maxsize = maxsize
        self.dropped = 0
        self._sub = bus.subscribe(self._from_thread, **filters)
        self._after_seq = 0  # live events up to this seq came from ``history``
        if history is not None:
            self._after_seq = bus.delivered_seq
            backlog = [e for e in history() if e.seq <= self._after_seq and self._sub.matches(e)]
            self._queue.extend(backlog[-maxsize:])
            if self._queue:
                self._ready.set()

    def _from_thread(self, event: SupervisionEvent) -> None:
        try:
            self._loop.call_soon_threadsafe(self._arrive_live, event)
        except RuntimeError:
            self._sub.close()

    def _arrive_live(self, event: SupervisionEvent) -> None:
        if event.seq > self._after_seq:  # else it came from the history already
            self._arrive(event)

    def _arrive(self, event: SupervisionEvent) -> None:
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
            logger.warning("event stream full (%d events): dropped the oldest", self.maxsize)
        self._queue.append(event)
        self._ready.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SupervisionEvent:
        while not self._queue:
            if self._sub.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def next(self, timeout_s: float) -> SupervisionEvent:
        """The next event; ``TimeoutError`` after ``timeout_s``."""
        return await asyncio.wait_for(self.__anext__(), timeout_s)

    def close(self) -> None:
        self._sub.close()
        self._ready.set()


class LoopThread:
    """The node's one event-loop thread, for the asyncio edges (NATS, PostgreSQL, HTTP).

    ``run(coro, timeout_s)`` submits a coroutine from a plain thread and waits
    for its result; calling it on the loop thread itself is refused.
    ``submit(coro)`` returns a ``concurrent.futures.Future`` without waiting.
    """

    def __init__(self, name: str = "mistersmith-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self._cancel_leftovers()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def _cancel_leftovers(self, grace_s: float = 5.0) -> None:
        """Cancel tasks someone forgot to finish, and give them ``grace_s`` to unwind."""
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if not tasks:
            return
        logger.warning("event loop stopping with %d unfinished task(s); cancelling them", len(tasks))
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.wait(tasks, timeout=grace_s))

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise BlockingCallError("LoopThread.run()", "await the coroutine directly")
        return self.submit(coro).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (pending callbacks run first) and join its thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
