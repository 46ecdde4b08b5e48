"""``ConcurrentRun``: an incarnation that runs up to ``concurrency`` commands at once.

A kind with ``concurrency = N`` (N > 1) serves its mailbox from a task on
its incarnation's loop instead of one command at a time:

- **Order.** Commands *start* in mailbox order, at most N at a time; they may
  *finish* in any order (an LLM call that streams for a minute does not hold
  up a quick ``status``). A caller that needs two commands in order waits for
  the first answer before it sends the second.
- **Shapes.** ``async def`` handlers (and async generators) run as tasks side
  by side. A sync handler (or a sync generator) runs inline on the loop: while
  it runs, the others wait; so a concurrent kind should be async.
- **Failures.** A handler that raises ``MisterSmithError`` answers its caller,
  as usual. A crash ends the incarnation: the other running commands are
  cancelled and their callers hear ``restarting``, and the supervisor decides.
- **Bounds.** A command past ``command_timeout_s``, or silent for
  ``idle_timeout_s``, is cancelled with ``timeout``; the agent and its other
  commands go on (one slow call is no reason to drop the others). One that
  has not ended ``shutdown_s`` after it was cancelled is blocking the loop
  (a sync handler that hangs): the incarnation fails as a hung one does.
- **Stopping.** A stop request cancels the running commands (their callers
  hear what callers of a stopped agent hear) and waits for them to unwind.
- **Not durable:** state commits are per command, which concurrent commands
  cannot give (a spawn of a durable kind with ``concurrency`` > 1 is refused).

Each running command has a ``Slot``: its order, reply, start time, last
progress and task. ``self.progress`` finds the slot of the task that calls it
(``_handlers.RUNNING``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
from asyncio import CancelledError
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pykka import messages as pykka_messages

from mistersmith import tracing
from mistersmith.errors import AgentFailedError, CommandTimeoutError, MisterSmithError

from ._aio import ANYTHING, IncarnationLoop
from ._cancel import untrack
from ._command import ASYNC, ASYNC_GENERATOR, GENERATOR, CommandSpec
from ._handlers import RUNNING, ProgressSink
from ._mailbox import Exit, Letter, Mailbox, Order, ReplySlot, StopRequest, deliver
from ._state import AgentState

__all__ = ["ConcurrentRun", "Slot"]

logger = logging.getLogger("mistersmith.agent")


class Slot:
    """One command running in a concurrent incarnation."""

    __slots__ = ("cancelled_at", "letter", "order", "progress_at", "reported", "reply", "sink", "started", "task")

    def __init__(self, letter: Letter, order: Order, started: float) -> None:
        self.letter = letter
        self.order = order
        self.reply: ReplySlot | None = letter.reply_to
        self.sink: ProgressSink | None = getattr(letter.reply_to, "progress", None)
        self.started = self.progress_at = started
        self.reported = False  # the watchdog said it is over a bound (once), then that it did not stop (once)
        self.cancelled_at: float | None = None  # when a bound cancelled it
        self.task: asyncio.Task[None] | None = None


class ConcurrentRun:
    """A mixin of ``Agent``: serve the mailbox with up to ``concurrency`` commands at once."""

    if TYPE_CHECKING:
        agent_id: str
        concurrency: int
        mailbox: Mailbox
        lifecycle: AgentState
        context: Any
        _aio: IncarnationLoop
        _lock: threading.Lock
        _now: Callable[[], float]
        _stop_exit: Exit | None
        _stop_restarting: bool | None
        _stop_reply: ReplySlot | None
        _crash_info: Any

        def _admit(self, envelope: Letter, order: Order) -> bool: ...
        def _command_spec(self, cmd: Order, reply: ReplySlot | None) -> CommandSpec | None: ...
        def _handle_other(self, envelope: Letter) -> Exit | None: ...
        def _settle(self, reply: ReplySlot | None, command: str | None, order: Order | None, result: Any,
                    expected: MisterSmithError | None, crash: BaseException | None) -> Exit | None: ...
        def _drain(self, gen: Any) -> Any: ...
        def abandon(self) -> bool: ...
        async def _adrain(self, agen: Any) -> None: ...

    _slots: dict[Order, Slot] | None = None
    """The running commands, in a concurrent incarnation (None in a one-at-a-time one)."""
    _crashed: Exit | None = None

    def _run_concurrently(self) -> Exit:
        """The incarnation's mailbox loop when ``concurrency`` > 1 (its own thread, its own loop)."""
        self._slots = {}
        try:
            exit_: Exit = self._aio.run(self._serve_slots(), ANYTHING)
            return exit_
        except CancelledError:  # given up on (abandoned): its commands were cancelled with it
            return Exit.crash("abandoned")

    async def _serve_slots(self) -> Exit:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        slots = self._slots
        assert slots is not None
        self._crashed = None
        self.mailbox.notify = self._aio.waker(wake)  # a sender's thread wakes this loop
        try:
            while True:
                if self._stop_exit is not None:
                    return self._stop_exit
                if self._crashed is not None:
                    return self._crashed
                wake.clear()  # (full, a letter only wakes it to look at the stop flag: no spinning)
                if len(slots) < self.concurrency:
                    letter = self.mailbox.get_nowait()
                    if letter is not None:
                        exit_ = self._take_letter(letter, loop)
                        if exit_ is not None:
                            return exit_
                        continue
                waiter = loop.create_task(wake.wait())
                await asyncio.wait([waiter, *(s.task for s in slots.values() if s.task is not None)],
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            self.mailbox.notify = None
            await self._wind_down()

    def _take_letter(self, letter: Letter, loop: asyncio.AbstractEventLoop) -> Exit | None:
        message = letter.message
        if type(message) is Order:
            if self._admit(letter, message):
                spec = self._command_spec(message, letter.reply_to)
                if spec is not None:
                    self._start_slot(letter, message, spec, loop)
            return None
        if type(message) is StopRequest:
            return None
        if isinstance(message, pykka_messages._ActorStop):
            self._stop_reply = letter.reply_to
            return Exit.normal()
        return self._handle_other(letter)

    def _start_slot(self, letter: Letter, order: Order, spec: CommandSpec, loop: asyncio.AbstractEventLoop) -> None:
        assert self._slots is not None
        slot = Slot(letter, order, self._now())
        fn = getattr(self, spec.method)
        with self._lock:
            self._slots[order] = slot
            self.lifecycle = AgentState.BUSY
        slot.task = loop.create_task(self._run_slot(slot, fn, spec.shape, order.payload))

    async def _run_slot(self, slot: Slot, fn: Callable[..., Any], shape: str, kwargs: Mapping[str, Any]) -> None:
        token = RUNNING.set(slot)
        traced = tracing.attach(slot.order.trace)  # this task's own context: the handler's spans nest under it
        if slot.order.trace is not None:
            slot.order.trace.add_event("started")
        expected: MisterSmithError | None = None
        crash: BaseException | None = None
        result: Any = None
        try:
            if shape == ASYNC:
                result = await fn(**kwargs)
            elif shape == ASYNC_GENERATOR:
                await self._adrain(fn(**kwargs))
            elif shape == GENERATOR:
                result = self._drain(fn(**kwargs))
            else:
                result = fn(**kwargs)
                if inspect.iscoroutine(result):
                    result = await result
        except MisterSmithError as exc:
            expected = exc
        except BaseException as exc:
            crash = exc
            if not isinstance(exc, CancelledError):
                self._crash_info = sys.exc_info()
        finally:
            RUNNING.reset(token)
        try:
            self._end_slot(slot, result, expected, crash)
        finally:
            tracing.detach(traced)

    def _end_slot(self, slot: Slot, result: Any, expected: MisterSmithError | None, crash: BaseException | None) -> None:
        assert self._slots is not None
        with self._lock:
            self._slots.pop(slot.order, None)
            if not self._slots:
                self.lifecycle = AgentState.IDLE
        if slot.order.correlation_id is not None:
            untrack(self.mailbox, slot.letter)
        exit_ = self._settle(slot.reply, slot.order.name, slot.order, result, expected, crash)
        if exit_ is not None and self._crashed is None:
            self._crashed = exit_
            if self._stop_restarting is None:
                self._stop_restarting = True  # the others' callers hear `restarting`

    async def _wind_down(self) -> None:
        """Cancel what still runs and let it answer its callers (the incarnation is ending)."""
        assert self._slots is not None
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        if self._stop_restarting is None and tasks:
            self._stop_restarting = False
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- from other threads -------------------------------------------------------------

    def _stop_slot(self, order: Order) -> bool:
        """Cancel ``order``'s task if it runs here (any thread). False if it does not run here."""
        slots = self._slots
        slot = slots.get(order) if slots is not None else None
        if slot is None or slot.task is None:
            return False
        self._aio.call_threadsafe(slot.task.cancel)
        return True

    def _overdue_slots(self, now: float) -> bool:
        """True once for each command past ``command_timeout_s`` or silent for ``idle_timeout_s`` (watchdog)."""
        slots = self._slots
        if not slots:
            return False
        found = False
        for slot in list(slots.values()):
            if not slot.reported and self._bound_passed(slot, now) is not None:
                slot.reported = found = True
            elif slot.cancelled_at is not None and now - slot.cancelled_at >= self._grace_s():
                slot.cancelled_at, found = None, True  # cancelled, and still there: the loop is blocked
        return found

    def _check_slots(self, now: float) -> bool:
        """Cancel each command over a bound with ``timeout`` (the supervisor's thread); the agent lives on."""
        slots = self._slots
        acted = False
        for slot in list((slots or {}).values()):
            if slot.reported and slot.cancelled_at is None and slot.order.stopped is not None:
                return self._blocked(slot)  # cancelled a grace ago, and never ended: nothing runs on the loop
            error = self._bound_passed(slot, now)
            if error is None or slot.order.stopped is not None:
                continue
            slot.order.stopped = error
            slot.cancelled_at = now
            deliver(slot.reply, error=error)
            self._stop_slot(slot.order)
            if error.idle:
                self.context.counters.add("idle_timeouts")
            acted = True
        return acted

    def _grace_s(self) -> float:
        """How long a cancelled command may take to end before its loop counts as blocked."""
        return self.context.shutdown_s if self.context.shutdown_s is not None else 1.0

    def _blocked(self, slot: Slot) -> bool:
        """A command that does not end when cancelled blocks the loop (a sync handler that hangs, an async one
        that never awaits): the incarnation fails as a hung one does, its thread abandoned and counted."""
        if not self.abandon():
            return False
        detail = (f"command {slot.order.name!r} kept the agent's loop blocked after it was cancelled "
                  f"(a sync handler that hangs in a kind with concurrency = {self.concurrency}?)")
        logger.error("agent %s hung: %s", self.agent_id, detail, extra={"agent_id": self.agent_id})
        self.context.emit("failed", detail, {"command": slot.order.name, "hung": True})
        for other in list((self._slots or {}).values()):
            deliver(other.reply, error=AgentFailedError(self.agent_id, detail))
        self.context.on_exit(self, Exit.crash(detail))
        return True

    def _bound_passed(self, slot: Slot, now: float) -> CommandTimeoutError | None:
        limit, idle = self.context.command_timeout_s, self.context.idle_timeout_s
        if limit is not None and now - slot.started >= limit:
            return CommandTimeoutError(self.agent_id, slot.order.name, limit)
        if idle is not None and now - slot.progress_at >= idle:
            return CommandTimeoutError(self.agent_id, slot.order.name, idle, idle=True)
        return None
