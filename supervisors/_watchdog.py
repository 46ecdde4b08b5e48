"""The hung-handler watchdog: a periodic sweep on the clock.

It only looks: a handler past its ``command_timeout_s`` is reported to the
agent's supervisor, which abandons it and emits ``failed`` in its own
thread (a timer callback never waits on the journal).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from mistersmith.actors import Agent
from mistersmith.clock import Clock, TimerHandle

from ._child import Child

__all__ = ["Overseer", "Watchdog"]


class Overseer(Protocol):
    """What the watchdog needs of a supervisor: to be told that a child's handler hung."""

    def report_hung(self, incarnation: Agent) -> None: ...


class Watchdog:
    """Sweeps the hosted agents every ``interval_s`` of the clock, from ``start`` to ``stop``."""

    def __init__(
        self, clock: Clock, interval_s: float, agents: Mapping[str, Child], supervisors: Mapping[str, Overseer]
    ) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._agents = agents
        self._supervisors = supervisors
        self._timer: TimerHandle | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._timer = self._clock.call_later(self._interval_s, self._sweep)

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        """Runs in the clock's thread: look, and tell the supervisor; never emit (that may wait on the journal)."""
        now = self._clock.now()
        for child in list(self._agents.values()):
            inc = child.incarnation
            if inc is not None and inc.overdue(now):  # False at once while it is idle
                sup = self._supervisors.get(child.context.supervisor)
                if sup is not None:
                    sup.report_hung(inc)
        with self._lock:
            if self._timer is not None:
                self._timer = self._clock.call_later(self._interval_s, self._sweep)
