"""Restart intensity: at most ``intensity`` restarts in any ``period_s`` window.

A pure sliding window over an injected monotonic clock reading, as OTP's
``supervisor``: each restart is recorded with its time; restarts more than
``period_s`` old fall out (one exactly ``period_s`` old still counts, as in OTP); the supervisor gives up when recording one more
restart leaves more than ``intensity`` in the window.
"""

from __future__ import annotations

from collections import deque

__all__ = ["IntensityWindow"]


class IntensityWindow:
    """Counts restarts in a sliding window. Not thread-safe: one supervisor owns it."""

    def __init__(self, intensity: int, period_s: float) -> None:
        self.intensity = intensity
        self.period_s = period_s
        self._restarts: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; True if that exceeds the intensity."""
        restarts = self._restarts
        restarts.append(now)
        while restarts and now - restarts[0] > self.period_s:
            restarts.popleft()
        return len(restarts) > self.intensity

    def count(self, now: float) -> int:
        """Restarts still inside the window at ``now``."""
        return sum(1 for t in self._restarts if now - t <= self.period_s)
