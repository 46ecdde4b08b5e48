"""Progress: what a running command reports before its result, and the stream a thread reads it from.

A handler reports progress with ``self.progress(data, done=..., total=...)``,
or by being a generator (each yielded item is one ``Progress``). It travels in
the command's own reply slot: a slot that wants it carries a ``progress``
callable (``ThreadStream`` here, ``LoopStream`` in ``mistersmith.crossing``);
a slot without one (``ask``, ``send``) drops it. Progress is advisory: a stream
keeps at most ``maxsize`` unread items and drops the oldest past that
(``dropped`` counts them), so a slow reader never holds up the agent.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["STREAM_MAXSIZE", "Progress", "ThreadStream"]

STREAM_MAXSIZE = 1000
"""Unread progress items a stream keeps before it drops the oldest."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report of a running command: its ``data`` and, if known, how far it got
    (``done`` of ``total``, in units the handler chooses)."""

    data: Any = None
    done: float | None = None
    total: float | None = None


class ThreadStream:
    """A reply slot with a progress sink, read by a plain thread (``Runtime.ask_stream``).

    Iterate it for the ``Progress`` items of the command as they come; the
    iteration ends when the command has finished, and raises its error if it
    failed (``on_timeout()`` once ``timeout_s`` passed without an end). Then
    ``result()`` returns the result (or raises the same error); called without
    iterating, it waits for the end and drops the progress.
    """

    def __init__(self, timeout_s: float, on_timeout: Callable[[], Exception], maxsize: int = STREAM_MAXSIZE) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: collections.deque[Progress] = collections.deque()
        self._ended = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._deadline = time.monotonic() + timeout_s
        self._on_timeout = on_timeout
        self.maxsize = maxsize
        self.dropped = 0

    # -- the agent's side (any thread; never blocks) ---------------------------

    def progress(self, item: Progress) -> None:
        with self._cond:
            if self._ended:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def set(self, value: Any = None) -> None:
        self._end(value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        self._end(None, exc_info[1])

    def _end(self, value: Any, error: BaseException | None) -> None:
        with self._cond:
            if self._ended:
                raise queue.Full
            self._ended = True
            self._value, self._exc = value, error
            self._cond.notify_all()

    # -- the caller's side ----------------------------------------------------------

    def __iter__(self) -> ThreadStream:
        return self

    def __next__(self) -> Progress:
        with self._cond:
            self._wait(lambda: bool(self._items))
            if self._items:
                return self._items.popleft()
            if self._exc is not None:
                raise self._exc
            raise StopIteration

    def result(self) -> Any:
        """The command's result, once it has finished (unread progress is dropped); raises its error."""
        with self._cond:
            self._items.clear()
            self._wait(lambda: False)
            self._items.clear()
            if self._exc is not None:
                raise self._exc
            return self._value

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Wait (holding the condition) until ``ready()`` or the end; past the deadline, end with the timeout."""
        while not ready() and not self._ended:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._ended, self._exc = True, self._on_timeout()
                return
            self._cond.wait(remaining)
