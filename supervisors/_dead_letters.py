"""Dead letters: messages that no incarnation will handle, answered and counted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from mistersmith.actors import Counters, Letter, Order, deliver
from mistersmith.errors import RestartingError, RuntimeClosedError, UnknownAgentError

__all__ = ["DeadLetters"]

logger = logging.getLogger("mistersmith.supervisor")


class DeadLetters:
    """Answers what is left in a mailbox nobody reads any more. Any thread may call it.

    ``closing`` says whether the whole tree is going down (the runtime closes,
    or its root gave up): the callers are then told so instead of "no such agent".
    ``moved`` holds the agents handed to another node a moment ago (id -> (until, retry
    after), on ``now``): their callers are told ``restarting``, to retry and reach them there.
    """

    def __init__(self, counters: Counters, closing: Callable[[], bool], now: Callable[[], float]) -> None:
        self._counters = counters
        self._closing = closing
        self._now = now
        self.moved: dict[str, tuple[float, float]] = {}

    def answer(self, agent_id: str, envelopes: Iterable[Letter]) -> None:
        """Answer (and count, and log) messages that no incarnation will handle.

        Their callers get ``UnknownAgentError``, or ``RuntimeClosedError`` once the
        tree is going down.
        """
        for envelope in envelopes:
            message = envelope.message
            if not isinstance(message, Order):
                if envelope.reply_to is not None:
                    deliver(envelope.reply_to, error=self.gone(agent_id))
                continue
            self._counters.add("dead_letters")
            logger.warning(
                "dead letter: %r for stopped agent %s", message.name, agent_id,
                extra={"agent_id": agent_id},
            )
            deliver(envelope.reply_to, error=self.gone(agent_id))

    def gone(self, agent_id: str) -> Exception:
        """The error a caller of an agent that is gone gets."""
        if self._closing():
            return RuntimeClosedError(f"agent {agent_id!r} was stopped: the runtime is shutting down")
        moved = self.moved.get(agent_id)
        if moved is not None:
            if moved[0] > self._now():
                return RestartingError(agent_id, moved[1])  # it moves to another node: retry, and reach it there
            self.moved.pop(agent_id, None)
        return UnknownAgentError(agent_id)
