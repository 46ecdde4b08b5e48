"""Injectable time: a monotonic clock plus timers.

A leaf module, imported by every layer that measures intervals (restart
intensity windows, backoff delays, the hung-handler watchdog). Intervals never
use ``time.time()``.

- ``MonotonicClock`` reads ``time.monotonic()`` and fires timers from one
  daemon thread, started on the first ``call_later`` and stopped by ``close()``.
- ``FakeClock`` only moves when a test calls ``advance()``; due timers run in
  the thread that advances it, in deadline order.

Timer callbacks must be quick and must not raise: they run on the clock's
thread (or the advancing thread). An exception in one is logged and the clock
goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "MonotonicClock", "TimerHandle"]

logger = logging.getLogger("mistersmith.clock")


class TimerHandle:
    """A scheduled callback; ``cancel()`` it if it is no longer wanted."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    """What the runtime needs from time."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once, ``delay_s`` seconds from now."""
        ...

    def close(self) -> None:
        """Stop firing timers and release the timer thread, if any."""
        ...


class _TimerQueue:
    """A heap of timers ordered by deadline, then by scheduling order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()

    def push(self, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, (handle.deadline, next(self._order), handle))

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> TimerHandle | None:
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return None
        return heapq.heappop(self._heap)[2]


def _fire(handle: TimerHandle) -> None:
    if handle.cancelled:
        return
    try:
        handle.callback()
    except Exception:
        logger.exception("timer callback %r raised; the clock goes on", handle.callback)


class MonotonicClock:
    """Real time: ``time.monotonic()`` and one timer thread."""

    def __init__(self) -> None:
        self._timers = _TimerQueue()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay_s), callback)
        with self._cond:
            if self._closed:
                handle.cancelled = True
                return handle
            self._timers.push(handle)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mistersmith-clock", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                deadline = self._timers.next_deadline()
                now = time.monotonic()
                handle = self._timers.pop_due(now)
                if handle is None:
                    self._cond.wait(None if deadline is None else deadline - now)
                    continue
            _fire(handle)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)


class FakeClock:
    """Test time: stands still until ``advance()``; timers fire in the advancing thread."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers = _TimerQueue()
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._now

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(self._now + max(0.0, delay_s), callback)
        with self._lock:
            self._timers.push(handle)
        return handle

    def advance(self, delta_s: float) -> None:
        """Move time forward, firing every timer that falls due, in order."""
        if delta_s < 0:
            raise ValueError(f"delta_s={delta_s!r}: time only moves forward")
        target = self._now + delta_s
        while True:
            with self._lock:
                handle = self._timers.pop_due(target)
                if handle is None:
                    self._now = target
                    return
                self._now = max(self._now, handle.deadline)
            _fire(handle)

    def pending(self) -> list[float]:
        """Deadlines of the timers not yet fired (for assertions)."""
        with self._lock:
            return sorted(d for d, _, h in self._timers._heap if not h.cancelled)

    def close(self) -> None:
        with self._lock:
            self._timers = _TimerQueue()
