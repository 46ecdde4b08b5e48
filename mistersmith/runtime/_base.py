"""The state every part of the ``Runtime`` shares, and how a call learns the runtime is closing.

The Runtime is one class put together from rooms (``_control``: kinds,
spawning, stop/restart and recovery; ``_commands``: send and ask; ``_runtime``:
the facade, introspection, events and shutdown). This base names the
attributes they share, so each room type-checks alone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from mistersmith.clock import Clock
from mistersmith.errors import FatalError, RuntimeClosedError, UnknownAgentError
from mistersmith.recovery import RecoveryReport
from mistersmith.supervisors import Child, EventBus, MemorySink, Supervisor, System

__all__ = ["RuntimeBase"]


class RuntimeBase:
    """Attributes set by ``Runtime.__init__``, and the refusals of a closing runtime."""

    node_id: str
    clock: Clock
    bus: EventBus
    events: MemorySink
    system: System[Supervisor]
    refused_kinds: dict[str, str]
    fatal_error: FatalError | None
    recovery: RecoveryReport | None
    _agents: Mapping[str, Child]
    _own_clock: bool
    _closing: bool
    _closed: threading.Event
    _close_lock: threading.Lock
    _root: Supervisor
    moved_ttl_s: float = 30.0
    """How long an agent handed to another node is answered ``restarting`` here (``hand_over``)."""

    def _check_open(self) -> None:
        if self.system.closing:
            raise self._closed_error()

    def _closed_error(self) -> RuntimeClosedError:
        if self.fatal_error is not None:
            message = "the runtime shut down after a fatal error; see runtime.fatal_error"
        elif self._closing:
            message = "the runtime is closed; create a new Runtime"
        else:
            message = "the runtime is shutting down: its root supervisor gave up (see runtime.fatal_error)"
        error = RuntimeClosedError(message)
        error.__cause__ = self.fatal_error
        return error

    def _unknown(self, agent_id: str) -> Exception:
        """What a call naming an agent that is not here raises: ``RuntimeClosedError`` from the moment
        the runtime starts closing (or its root gives up), ``RestartingError`` for one handed to another
        node a moment ago (``hand_over``), else ``UnknownAgentError``."""
        if self.system.closing:
            return self._closed_error()
        return self.system.gone(agent_id)
