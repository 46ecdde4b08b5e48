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

from mistersmith.actors import Letter, Order, ThreadReply, ThreadStream
from mistersmith.crossing import LoopReply, LoopStream, forbid_blocking
from mistersmith.errors import CommandTimeoutError, InvalidPayloadError, MailboxFullError, RestartingError
from mistersmith.supervisors import ChildStatus

from ._base import RuntimeBase

__all__ = ["Commands", "queued"]

logger = logging.getLogger("mistersmith.runtime")

_BACKING_OFF = ChildStatus.BACKING_OFF  # read on the hot path of send/ask


class Commands(RuntimeBase):
    """The Runtime's commands to agents."""

    def _enqueue(self, agent_id: str, command: str, payload: Any, reply: Any, timeout_s: float | None = None) -> None:
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
        letter = Letter(Order(command, payload, deadline), reply)
        if deadline is not None:
            mailbox.waiting.add(letter)  # before it is queued: the agent may take it at once
        if not mailbox.offer(letter):
            mailbox.waiting.discard(letter)
            self.system.counters.add("mailbox_full")
            self._dead_letter(agent_id, command, f"mailbox full ({mailbox.limit})")
            raise MailboxFullError(agent_id, mailbox.limit)
        if mailbox.closed:  # stopped while we queued: answer it as a dead letter
            self.system.dead_letters(agent_id, mailbox.drain())

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

    def ask(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float) -> Any:
        """Send a command and wait at most ``timeout`` seconds for its result.

        Raises the handler's ``CommandError``, ``AgentFailedError`` if it
        crashed, ``CommandTimeoutError``, or any refusal ``send`` raises.
        """
        forbid_blocking("Runtime.ask()", "await runtime.aask(...)")
        reply = ThreadReply()
        self._enqueue(agent_id, command, payload, reply, timeout)
        if not reply.wait(timeout):
            raise CommandTimeoutError(agent_id, command, timeout)
        return reply.result()

    async def aask(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
    ) -> Any:
        """``ask`` for asyncio programs; never blocks the loop."""
        return await self.ask_future(agent_id, command, payload, timeout=timeout)

    def ask_future(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
    ) -> asyncio.Future[Any]:
        """Queue the command now and return the future of its result (call it on the event loop).

        Refusals (``UnknownAgentError``, ``MailboxFullError``...) raise at
        once; the future holds the result or the error ``aask`` would raise,
        ``CommandTimeoutError`` after ``timeout`` seconds included. For callers
        that must queue in order before they await (the NATS bridge).
        """
        return queued(
            timeout, lambda: CommandTimeoutError(agent_id, command, timeout),
            lambda reply: self._enqueue(agent_id, command, payload, reply, timeout),
        )

    def ask_stream(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
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
        stream = ThreadStream(timeout, lambda: CommandTimeoutError(agent_id, command, timeout))
        self._enqueue(agent_id, command, payload, stream, timeout)
        return stream

    def astream(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
    ) -> LoopStream:
        """``ask_stream`` for asyncio programs (call it on the event loop; it queues at once):
        ``async for item in runtime.astream(...)``, then ``await stream.result()``."""
        stream = LoopStream(timeout, lambda: CommandTimeoutError(agent_id, command, timeout))
        try:
            self._enqueue(agent_id, command, payload, stream, timeout)
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
