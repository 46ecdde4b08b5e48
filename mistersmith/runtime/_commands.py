"""Sending commands to agents: ``send`` (a tell), ``ask``, ``ask_stream`` and their asyncio faces.

The hot path of the runtime: ``_enqueue`` checks the agent, the stash rule
during a backoff (wait for the next incarnation within the caller's deadline,
else ``restarting`` at once) and the mailbox bound, then queues. ``ask`` waits
on a ``ThreadReply``; ``ask_future``/``aask`` on a ``LoopReply`` (the one
crossing from an actor thread back to the loop, ``mistersmith.crossing``).
``ask_stream`` and ``astream`` pass a reply slot that carries progress too
(``ThreadStream``, ``LoopStream``): the same command, the same errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mistersmith.actors import STREAM_MAXSIZE, Letter, Order, ThreadReply, ThreadStream, cancel_letter
from mistersmith import tracing
from mistersmith.crossing import LoopReply, LoopStream, forbid_blocking
from mistersmith.errors import (
    CommandCancelledError,
    CommandTimeoutError,
    InvalidPayloadError,
    MailboxFullError,
    RestartingError,
)
from mistersmith.supervisors import ChildStatus

from ._base import RuntimeBase

__all__ = ["Commands", "queued"]

logger = logging.getLogger("mistersmith.runtime")

_BACKING_OFF = ChildStatus.BACKING_OFF  # read on the hot path of send/ask


class Commands(RuntimeBase):
    """The Runtime's commands to agents."""

    def _enqueue(self, agent_id: str, command: str, payload: Any, reply: Any, timeout_s: float | None = None,
                 correlation_id: str | None = None) -> Letter:
        # The hot path of send/ask: keep it lean.
        if self.system.closing:  # closing, or the root gave up: nothing queued now would be handled
            raise self._closed_error()
        child = self._agents.get(agent_id)
        mailbox = child.context.mailbox if child is not None else None
        if child is None or mailbox is None or mailbox.closed:
            self._dead_letter(agent_id, command, "no such agent")
            raise self._unknown(agent_id)
        if payload is None:
            payload = {}
        elif type(payload) is not dict and not isinstance(payload, Mapping):
            raise InvalidPayloadError(command, f"payload must be a JSON object, not {type(payload).__name__}")
        deadline = None if timeout_s is None else self.clock.now() + timeout_s
        if child.status is _BACKING_OFF:
            # During a backoff a command waits for the next incarnation (the stash) while the
            # stash has room and the restart comes before the caller's deadline; else `restarting`.
            retry = None if child.restart_at is None else max(0.0, child.restart_at - self.clock.now())
            if mailbox.depth() >= getattr(child.spec, "stash_limit", 0) or (
                    timeout_s is not None and retry is not None and retry >= timeout_s):
                raise RestartingError(agent_id, retry)
        order = Order(command, payload, deadline, correlation_id)
        if tracing.enabled:
            order.trace = tracing.start(f"agent.command {command}", attributes={
                "mistersmith.agent_id": agent_id, "mistersmith.kind": child.context.kind,
                "mistersmith.command": command})
        letter = Letter(order, reply)
        if deadline is not None:
            mailbox.waiting.add(letter)  # before it is queued: the agent may take it at once
        if correlation_id is not None:
            mailbox.tracked[correlation_id] = letter
        if not mailbox.offer(letter):
            mailbox.waiting.discard(letter)
            mailbox.tracked.pop(correlation_id, None)  # type: ignore[arg-type]
            self.system.counters.add("mailbox_full")
            self._dead_letter(agent_id, command, f"mailbox full ({mailbox.limit})")
            tracing.finish(order.trace, "mailbox_full")
            raise MailboxFullError(agent_id, mailbox.limit)
        if mailbox.closed:  # stopped while we queued: answer it as a dead letter
            self.system.dead_letters(agent_id, mailbox.drain())
        return letter

    def _stop_letter(self, agent_id: str, letter: Letter, error: BaseException) -> bool:
        """Its caller gave up on one queued or running command (any thread; the caller knows why):
        drop it, or cancel it if it runs. False if it had finished."""
        child = self._agents.get(agent_id)
        return child is not None and cancel_letter(child.context.mailbox, letter, error, child.incarnation,
                                                   answer=False)

    def _timed_out(self, agent_id: str, command: str, timeout_s: float, letter: Letter | None) -> Exception:
        """The caller's deadline passed: the command is dropped if queued, cancelled if running."""
        error = CommandTimeoutError(agent_id, command, timeout_s)
        if letter is not None:
            self._stop_letter(agent_id, letter, error)
        return error

    def cancel(self, agent_id: str, correlation_id: str) -> bool:
        """Cancel the command sent with ``correlation_id``; any thread, never blocks.

        A queued command leaves the mailbox unrun; a running async handler is
        cancelled (it sees ``CancelledError``); a sync one sees
        ``self.cancelled`` set. Its caller gets ``CommandCancelledError``
        (``cancelled``) at once. The agent lives on: a cancel is no crash.
        False if no such command is queued or running (it finished first).
        ``UnknownAgentError`` if there is no such agent here.
        """
        child = self._agents.get(agent_id)
        if child is None:
            raise self._unknown(agent_id)
        mailbox = child.context.mailbox
        letter = mailbox.tracked.get(correlation_id)
        if letter is None:
            return False
        error = CommandCancelledError(agent_id, letter.message.name, correlation_id)
        if not cancel_letter(mailbox, letter, error, child.incarnation):
            return False
        self.system.counters.add("cancelled")
        logger.info("command %r to %s cancelled (correlation id %s)", letter.message.name, agent_id,
                    correlation_id, extra={"agent_id": agent_id})
        return True

    async def acancel(self, agent_id: str, correlation_id: str) -> bool:
        """``cancel`` for symmetry in asyncio programs (it never blocks anyway)."""
        return self.cancel(agent_id, correlation_id)

    def _dead_letter(self, agent_id: str, command: str, why: str) -> None:
        self.system.counters.add("dead_letters")
        logger.warning("dead letter: %r for agent %s: %s", command, agent_id, why, extra={"agent_id": agent_id})

    def send(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None) -> None:
        """Tell: queue a command and return at once. Never blocks; fine on an event loop.

        Raises at once if the command cannot be queued (``UnknownAgentError``,
        ``MailboxFullError``, ``RestartingError``); what the handler does later
        is not reported back (a crash still goes to the supervisor).
        """
        self._enqueue(agent_id, command, payload, None)

    async def asend(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None) -> None:
        """``send`` for symmetry in asyncio programs (it never blocks anyway)."""
        self._enqueue(agent_id, command, payload, None)

    def ask(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float,
            correlation_id: str | None = None) -> Any:
        """Send a command and wait at most ``timeout`` seconds for its result.

        Raises the handler's ``CommandError``, ``AgentFailedError`` if it
        crashed, ``CommandTimeoutError`` (the command is then dropped, or
        cancelled if it runs: a caller that gave up is never served late),
        ``CommandCancelledError`` if another thread cancelled it by its
        ``correlation_id`` (``cancel``), or any refusal ``send`` raises.
        """
        forbid_blocking("Runtime.ask()", "await runtime.aask(...)")
        reply = ThreadReply()
        letter = self._enqueue(agent_id, command, payload, reply, timeout, correlation_id)
        if not reply.wait(timeout):
            raise self._timed_out(agent_id, command, timeout, letter)
        return reply.result()

    async def aask(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float,
        correlation_id: str | None = None,
    ) -> Any:
        """``ask`` for asyncio programs; never blocks the loop. Cancelling the awaiting task cancels the
        command too (as ``cancel`` would)."""
        future, letter = self._ask(agent_id, command, payload, timeout, correlation_id)
        try:
            return await future
        except asyncio.CancelledError:
            if self._stop_letter(agent_id, letter, CommandCancelledError(agent_id, command, correlation_id)):
                self.system.counters.add("cancelled")
            raise

    def ask_future(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float,
        correlation_id: str | None = None,
    ) -> asyncio.Future[Any]:
        """Queue the command now and return the future of its result (call it on the event loop).

        Refusals (``UnknownAgentError``, ``MailboxFullError``...) raise at
        once; the future holds the result or the error ``aask`` would raise,
        ``CommandTimeoutError`` after ``timeout`` seconds included. For callers
        that must queue in order before they await (the NATS bridge).
        """
        return self._ask(agent_id, command, payload, timeout, correlation_id)[0]

    def _ask(self, agent_id: str, command: str, payload: Any, timeout: float,
             correlation_id: str | None) -> tuple[asyncio.Future[Any], Letter]:
        letter: Letter | None = None

        def enqueue(reply: LoopReply) -> None:
            nonlocal letter
            letter = self._enqueue(agent_id, command, payload, reply, timeout, correlation_id)

        future = queued(timeout, lambda: self._timed_out(agent_id, command, timeout, letter), enqueue)
        assert letter is not None
        return future, letter

    def ask_stream(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float,
        correlation_id: str | None = None,
    ) -> ThreadStream:
        """Send a command and read its progress while it runs, then its result.

        ``for item in stream`` yields each ``Progress`` the handler reports
        (``self.progress(...)``, or a generator's yields); the loop ends when the
        command has finished, raising what ``ask`` would raise if it failed.
        ``stream.result()`` then returns the result (called first, it waits and
        drops the progress). ``timeout`` bounds the whole command, as for ``ask``.
        Refusals (``UnknownAgentError``, ``MailboxFullError``...) raise at once.
        """
        forbid_blocking("Runtime.ask_stream()", "async for item in runtime.astream(...)")
        letter: Letter | None = None
        stream = ThreadStream(timeout, lambda: self._timed_out(agent_id, command, timeout, letter))
        letter = self._enqueue(agent_id, command, payload, stream, timeout, correlation_id)
        return stream

    def astream(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float,
        correlation_id: str | None = None, maxsize: int = STREAM_MAXSIZE,
    ) -> LoopStream:
        """``ask_stream`` for asyncio programs (call it on the event loop; it queues at once):
        ``async for item in runtime.astream(...)``, then ``await stream.result()``. ``maxsize``: the
        unread items it keeps before it drops the oldest (``stream.dropped`` counts them)."""
        letter: Letter | None = None
        stream = LoopStream(timeout, lambda: self._timed_out(agent_id, command, timeout, letter), maxsize)
        try:
            letter = self._enqueue(agent_id, command, payload, stream, timeout, correlation_id)
        except BaseException:
            stream.cancel()
            raise
        return stream


def queued(
    timeout_s: float, on_timeout: Callable[[], Exception], queue: Callable[[LoopReply], None]
) -> asyncio.Future[Any]:
    """A ``LoopReply``'s future after ``queue`` handed the reply slot to an actor; nothing left behind if it raises."""
    reply = LoopReply(timeout_s, on_timeout)
    try:
        queue(reply)
    except BaseException:
        reply.cancel()
        raise
    return reply.future
