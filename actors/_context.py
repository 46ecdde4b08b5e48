"""What an agent knows of the world around it, and the counters it feeds.

An ``AgentContext`` is made once per agent by its supervisor and handed to
every incarnation of that agent, so the mailbox, the pause flag and the
restart count outlive a restart. The two callbacks connect the agent to the
layers above it without importing them:

- ``emit(event_type, reason, data)`` records a supervision event;
- ``on_exit(incarnation, exit)`` delivers the incarnation's exit signal;
- ``gone(agent_id)`` says what a caller of an agent that stopped is told.

It also keeps the agent's circuit breakers (``breakers``), which so outlive a restart too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mistersmith.clock import Clock
from mistersmith.errors import UnknownAgentError

from ._breaker import Breakers
from ._durable import DurableOptions
from ._mailbox import Exit, Mailbox

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["AgentContext", "Counters"]


class Counters:
    """Node-wide counts of things that must never pass silently. Thread-safe."""

    NAMES = ("dead_letters", "mailbox_full", "abandoned_threads", "leaked_threads", "restarts", "cancelled",
             "idle_timeouts")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, delta: int = 1) -> None:
        with self._lock:
            self._values[name] += delta

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


@dataclass(eq=False)
class AgentContext:
    """One agent's identity and its links to its supervisor and the node."""

    agent_id: str
    kind: str
    config: Mapping[str, Any]
    supervisor: str
    mailbox: Mailbox
    clock: Clock
    counters: Counters
    emit: Callable[[str, str | None, dict[str, Any]], None]
    on_exit: Callable[[Agent, Exit], None]
    command_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    """A command that reports no progress for this long fails with ``timeout`` (None: no such bound)."""
    restart_count: int = 0
    paused: bool = False
    start_data: Mapping[str, Any] = field(default_factory=dict)
    """What ``started``/``restarted`` events carry: restart type, config... (for replay and recovery)."""
    durable: DurableOptions | None = None
    """Set for a durable agent: where its state is kept, and how."""
    reset_state: bool = False
    """The next incarnation starts from an empty state, committed as the next version (an operator's
    ``restart(..., reset_state=True)``); cleared once it has."""
    shutdown_s: float | None = None
    """How long a cancelled hung async handler may take to end before its thread counts as leaked
    (its spec's ``shutdown_s``; None: not waited for)."""
    cause: Any = None
    """The trace context of the crash that ends the current incarnation, for the next one's ``restarted``."""
    gone: Callable[[str], Exception] = UnknownAgentError
    """What a caller of this agent is told once no incarnation will answer it (the supervisors'
    dead-letter answer: ``unknown_agent``, ``closed`` while the tree goes down...)."""
    breakers: Breakers = field(init=False, repr=False)
    """The agent's circuit breakers (``Agent.breaker``): here, so a restart does not reset them."""

    def __post_init__(self) -> None:
        # Through self, so the emit a supervisor sets after construction is the one used.
        self.breakers = Breakers(self.agent_id, lambda: self.clock.now(),
                                 lambda event_type, reason, data: self.emit(event_type, reason, data))
