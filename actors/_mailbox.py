"""Mailboxes, the messages that travel in them, and reply slots.

Names: a ``Letter`` is what a mailbox holds (a message and, for an ask, a
``ReplySlot``), in pykka's envelope shape; an ``Order`` is a user command in a
letter. (The wire's ``Envelope`` and ``Reply``, in ``mistersmith.envelope``,
are what NATS carries: other things, other names.)

A ``Mailbox`` belongs to an agent, not to one incarnation: when a supervisor
restarts an agent, the new incarnation goes on with the messages still queued
(as in Akka), so nothing queued is lost to a restart. User commands enter
through ``offer()``, which respects the bound; system messages (stop requests,
pykka's own ``tell``/``ask``) use ``put()``, which never refuses.

A reply slot is anything with pykka's ``Future`` setter shape:
``set(value)`` and ``set_exception(exc_info)``. ``ThreadReply`` is the blocking
one used by synchronous callers; the asyncio one lives in
``mistersmith.crossing``. A slot may also carry ``progress``: a callable that
takes each ``Progress`` its command reports before the outcome (called in the
agent's thread; it must not block), or None, as for ``ThreadReply``: progress
is dropped. The streams (``ThreadStream`` in ``_progress``, ``LoopStream``)
have one.
"""

from __future__ import annotations

import _thread
import queue
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Exit", "Letter", "Mailbox", "Order", "ReplySlot", "StopRequest", "ThreadReply", "deliver"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class ReplySlot(Protocol):
    """Where a handler's outcome goes. Setting it twice raises ``queue.Full``."""

    def set(self, value: Any = None) -> None: ...

    def set_exception(self, exc_info: Any = None) -> None: ...


class Letter:
    """A message plus, for an ask, the reply slot (pykka's envelope shape)."""

    __slots__ = ("message", "reply_to")

    def __init__(self, message: Any, reply_to: ReplySlot | None = None) -> None:
        self.message = message
        self.reply_to = reply_to


class Order:
    """A command for an agent: its name, its JSON-compatible payload, when its caller
    stops waiting (``deadline``, on the runtime's clock; None for a tell) and the
    caller's ``correlation_id``, by which it may be cancelled (``_cancel``)."""

    __slots__ = ("correlation_id", "deadline", "late", "name", "payload", "stopped", "trace")

    def __init__(self, name: str, payload: Mapping[str, Any], deadline: float | None = None,
                 correlation_id: str | None = None) -> None:
        self.name = name
        self.payload = payload
        self.deadline = deadline
        self.correlation_id = correlation_id
        self.late = False  # answered `restarting` before any incarnation took it: never run
        self.stopped: BaseException | None = None  # cancelled (or its caller gave up): what its caller was told
        self.trace: Any = None  # its ``agent.command`` span, from queued to finished (``mistersmith.tracing``)

    def __repr__(self) -> str:
        return f"Order({self.name!r})"


@dataclass(frozen=True, slots=True)
class Exit:
    """Why an incarnation ended, in OTP's terms.

    ``kind`` is ``normal`` (the agent stopped itself), ``shutdown`` (it was told
    to stop), ``fenced`` (a durable agent whose newer activation exists elsewhere:
    never restarted here) or ``crash`` (anything else: an exception, a hang, a
    failed start).
    """

    kind: str
    detail: str = ""
    exception: BaseException | None = None
    trace: Any = field(default=None, compare=False, repr=False)
    """The trace context of the command that crashed it (the supervisor's events carry its trace id)."""

    @property
    def is_crash(self) -> bool:
        return self.kind == "crash"

    def describe(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    @classmethod
    def normal(cls, detail: str = "") -> Exit:
        return cls("normal", detail)

    @classmethod
    def shutdown(cls, detail: str = "") -> Exit:
        return cls("shutdown", detail)

    @classmethod
    def crash(cls, detail: str, exception: BaseException | None = None, trace: Any = None) -> Exit:
        return cls("crash", detail, exception, trace)


class StopRequest:
    """Wakes one incarnation so that it sees its stop flag. Others ignore it."""

    __slots__ = ("incarnation",)

    def __init__(self, incarnation: object) -> None:
        self.incarnation = incarnation


class Mailbox:
    """An unbounded queue with a bounded entrance for user commands."""

    __slots__ = ("_queue", "closed", "limit", "notify", "tracked", "waiting")

    def __init__(self, limit: int) -> None:
        self._queue: queue.SimpleQueue[Letter] = queue.SimpleQueue()
        self.limit = limit
        self.closed = False
        self.waiting: set[Letter] = set()  # queued asks (with a deadline), until an incarnation takes them
        self.tracked: dict[str, Letter] = {}  # commands with a correlation id, queued or running: cancellable
        self.notify: Any = None  # called after each letter is queued (an incarnation that awaits letters)

    def offer(self, envelope: Letter) -> bool:
        """Queue a user message unless ``limit`` messages already wait.

        With concurrent senders the bound can be overshot by at most one
        message per sender thread.
        """
        if self._queue.qsize() >= self.limit:
            return False
        self._queue.put(envelope)
        if self.notify is not None:
            self.notify()
        return True

    def put(self, envelope: Letter, /) -> None:
        self._queue.put(envelope)
        if self.notify is not None:
            self.notify()

    def get_nowait(self) -> Letter | None:
        """The oldest letter, or None if there is none now."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def answer_late(self, before: float) -> list[Letter]:
        """Take back the asks whose caller stops waiting before ``before``: each is marked
        ``late`` (no incarnation will run it) and returned, for its caller to hear why at once.

        For the moment a backoff starts: a caller whose deadline comes before the restart is
        told ``restarting`` now instead of timing out later. Only asks (orders with a deadline)
        are tracked, in ``waiting``; the queue itself is not touched, so senders need no lock.
        """
        late: list[Letter] = []
        for letter in list(self.waiting):
            order = letter.message
            if type(order) is Order and order.deadline is not None and order.deadline < before:
                order.late = True
                self.waiting.discard(letter)
                late.append(letter)
        return late

    def get(self) -> Letter:
        return self._queue.get()

    def empty(self) -> bool:
        return self._queue.empty()

    def depth(self) -> int:
        return self._queue.qsize()

    def drain(self) -> list[Letter]:
        """Take every queued letter out, oldest first (not those already answered ``late``)."""
        taken: list[Letter] = []
        while True:
            try:
                letter = self._queue.get_nowait()
            except queue.Empty:
                self.waiting.clear()
                return taken
            if not (type(letter.message) is Order and letter.message.late):
                taken.append(letter)


class ThreadReply:
    """A one-shot reply slot that a plain thread waits on."""

    __slots__ = ("_done", "_exc", "_value", "progress")

    def __init__(self) -> None:
        self.progress: Any = None  # a plain reply drops progress (see ``ReplySlot``)
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._value: Any = None
        self._exc: BaseException | None = None

    def set(self, value: Any = None) -> None:
        if not self._done.locked():
            raise queue.Full
        self._value = value
        self._release()

    def set_exception(self, exc_info: Any = None) -> None:
        if not self._done.locked():
            raise queue.Full
        self._exc = exc_info[1]
        self._release()

    def _release(self) -> None:
        try:
            self._done.release()
        except RuntimeError:  # a racing setter released it first
            raise queue.Full from None

    def wait(self, timeout_s: float) -> bool:
        """Wait for the outcome; False if ``timeout_s`` passed first."""
        if self._done.acquire(timeout=timeout_s):
            self._done.release()
            return True
        return False

    def result(self) -> Any:
        """The value, or raise the exception that was set."""
        if self._exc is not None:
            raise self._exc
        return self._value


def deliver(reply: ReplySlot | None, value: Any = None, error: BaseException | None = None) -> bool:
    """Set a reply slot once; a slot that is already set is left alone (False)."""
    if reply is None:
        return False
    try:
        if error is None:
            reply.set(value)
        else:
            reply.set_exception((type(error), error, error.__traceback__))
    except queue.Full:
        return False
    return True
