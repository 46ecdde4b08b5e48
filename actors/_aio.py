"""``IncarnationLoop``: the asyncio event loop of one agent incarnation, in that incarnation's thread.

An incarnation that has an ``async def`` hook or handler gets a loop of its
own, made at the first one and closed when the incarnation ends. It runs in
the incarnation's thread, and only while a hook or handler awaits
(``run``): one command at a time, in mailbox order, as for sync handlers. A
task a handler leaves behind (``asyncio.create_task`` without awaiting it)
moves on only while a later handler runs, and is cancelled when the loop
closes. The node's event loop is never used for agent work. A command's
task takes its first step at once, in ``run`` (``EagerLoop``, as 3.12's eager
tasks): a handler that returns without awaiting anything that suspends costs
no loop iteration.

What comes from other threads, all here and all through
``call_soon_threadsafe``: cancellation (``cancel_threadsafe(level)``, called by
the supervisor's thread or the thread that stops the agent;
``cancel_command_threadsafe`` for one command, from a caller's ``cancel``), and,
in a concurrent kind (``_concurrent``), cancelling one running command's task
(``call_threadsafe``) and waking the loop when a letter is queued
(``waker``). These calls are part of the agent's own machinery, between two
threads of one agent's life; ``mistersmith.crossing`` remains the only module
that crosses to and from the node's loop.

Levels: a stop request cancels a running command (``COMMAND``); giving up on
the incarnation (a hung command, ``start_timeout_s``, ``shutdown_s``)
cancels whatever runs, hooks included (``ANYTHING``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVarTuple, Unpack

__all__ = ["ANYTHING", "COMMAND", "IncarnationLoop", "open_loops"]

logger = logging.getLogger("mistersmith.agent")

COMMAND = 1
"""A command handler: cancelled by a stop request, or when the incarnation is given up on."""
ANYTHING = 2
"""A hook (``on_start``, ``on_stop``, ``on_failure``): cancelled only when the incarnation is given up on."""

LEFTOVER_GRACE_S = 1.0
"""How long tasks left behind get to unwind, once cancelled, when the loop closes."""

_open: set[IncarnationLoop] = set()
_open_lock = threading.Lock()


def open_loops() -> list[str]:
    """The names of the incarnation loops open now (an ended incarnation leaves none behind)."""
    with _open_lock:
        return sorted(lp.name for lp in _open)


_Ts = TypeVarTuple("_Ts")


def _nothing() -> None:
    pass


_Step = tuple[Callable[..., Any], tuple[Any, ...], contextvars.Context | None]


class EagerLoop(asyncio.SelectorEventLoop):
    """An incarnation's event loop, whose command tasks take their first step at once (as 3.12's eager tasks).

    ``unstarted_task`` makes the task but keeps back the first step its
    constructor schedules (its one ``call_soon``); ``step_now`` takes that step
    in the calling thread, with this loop as the running loop and its async
    generator hooks in place, just as the loop would have. A handler that
    returns without suspending is then done without a loop iteration; one that
    suspends has registered its wake-ups, and the loop runs on from there.
    """

    _keep_next_call: bool = False
    _kept: _Step | None = None

    def __init__(self) -> None:
        super().__init__()
        self._not_scheduled = asyncio.Handle(_nothing, (), self)  # what a kept-back call_soon returns (unused)

    def call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts],
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        if self._keep_next_call:
            self._keep_next_call, self._kept = False, (callback, args, context)
            return self._not_scheduled  # never scheduled: ``step_now`` runs the call
        return super().call_soon(callback, *args, context=context)

    def unstarted_task(self, coro: Coroutine[Any, Any, Any]) -> tuple[asyncio.Task[Any], _Step | None]:
        """A task of ``coro`` and its first step, not yet scheduled (None: its constructor scheduled none)."""
        self._keep_next_call = True
        try:
            task = self.create_task(coro)
        finally:
            self._keep_next_call = False
        step, self._kept = self._kept, None
        return task, step

    def step_now(self, step: _Step | None) -> None:
        """Take ``step`` (from ``unstarted_task``) here, as this loop would: it is the running loop meanwhile."""
        if step is None:
            return
        callback, args, context = step
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
                               finalizer=self._asyncgen_finalizer_hook)  # type: ignore[attr-defined]
        asyncio.events._set_running_loop(self)
        try:
            if context is None:
                callback(*args)
            else:
                context.run(callback, *args)
        finally:
            asyncio.events._set_running_loop(None)
            sys.set_asyncgen_hooks(*hooks)


class IncarnationLoop:
    """One incarnation's loop: made lazily, run in its thread, closed at its end."""

    __slots__ = ("_cancel_level", "_command_cancelled", "_executor", "_level", "_lock", "_loop", "_task", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: EagerLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._level = 0
        self._cancel_level = 0  # the highest level cancelled so far: what starts at or below it is cancelled at once
        self._command_cancelled = False  # this one command was cancelled (``cancel_command_threadsafe``)

    def run(self, coro: Coroutine[Any, Any, Any], level: int) -> Any:
        """Run ``coro`` to its end on this loop, in the calling (the incarnation's) thread.

        Returns its result or raises what it raised; ``CancelledError`` once it was cancelled.
        """
        loop = self._loop if self._loop is not None else self._open()
        with self._lock:
            cancelled = self._cancel_level >= level or (self._command_cancelled and level == COMMAND)
            if not cancelled:
                task, first_step = loop.unstarted_task(coro)
                self._task, self._level = task, level
        if cancelled:  # cancelled before it began: it never runs (as a task cancelled before its first step)
            coro.close()
            raise asyncio.CancelledError
        try:
            loop.step_now(first_step)  # a handler that does not suspend ends here: the loop never runs
            return task.result() if task.done() else loop.run_until_complete(task)
        finally:
            self._task = None  # a cancel that read it a moment ago cancels a task that has ended: nothing

    def cancel_threadsafe(self, level: int) -> bool:
        """From any thread: cancel what runs at ``level`` or below, now, and what starts there later.

        The incarnation's only cross-thread call into its loop: ``call_soon_threadsafe(task.cancel)``.
        True if a task was running and is being cancelled.
        """
        with self._lock:
            self._cancel_level = max(self._cancel_level, level)
            task, loop = self._task, self._loop
            if task is None or loop is None or self._level > level:
                return False
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # closed meanwhile: nothing runs there any more
            return False
        return True

    def cancel_command_threadsafe(self) -> None:
        """From any thread: cancel the running command's task, and what it starts on this loop until
        ``command_done`` (a cancel that comes before its first await is kept for it). Hooks are left alone."""
        with self._lock:
            self._command_cancelled = True
            task, loop = self._task, self._loop
            if task is None or loop is None or self._level != COMMAND:
                return
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # closed meanwhile
            pass

    def call_threadsafe(self, fn: Any) -> None:
        """From any thread: call ``fn`` on this loop soon (nothing if it is closed or was never made)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # closed meanwhile
            pass

    def waker(self, event: asyncio.Event) -> Callable[[], None]:
        """A call any thread may make to set ``event`` on this loop (once it is closed: nothing)."""
        loop = self._loop
        assert loop is not None, "make the waker from a coroutine running on this loop"

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # closed meanwhile: nobody is left to wake
                pass

        return wake

    def command_done(self) -> None:
        """The command ended (in the incarnation's thread): a cancel of it no longer applies."""
        if self._command_cancelled:
            with self._lock:
                self._command_cancelled = False

    def close(self) -> None:
        """Cancel what was left behind (``LEFTOVER_GRACE_S`` to unwind), finish async generators and close.

        In the incarnation's thread, as it ends; harmless if the loop was never made.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if leftovers:
                logger.warning("agent loop %s closing with %d unfinished task(s); cancelling them",
                               self.name, len(leftovers))
                for task in leftovers:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_GRACE_S))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException:  # never let cleanup stop the incarnation from ending
            logger.exception("agent loop %s did not close cleanly", self.name)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            loop.close()
            with _open_lock:
                _open.discard(self)

    def _open(self) -> EagerLoop:
        loop = EagerLoop()
        # asyncio.to_thread / run_in_executor threads carry the agent's name, so a leak is seen as ours.
        self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix=f"{self.name}-executor")
        loop.set_default_executor(self._executor)
        with self._lock:
            self._loop = loop
        with _open_lock:
            _open.add(self)
        return loop
