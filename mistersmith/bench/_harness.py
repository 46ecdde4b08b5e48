"""What every side-by-side measurement needs: the pykka baseline actor,
interleaved rounds, CPU pinning, and crash logs kept off the terminal."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import pykka

__all__ = ["ASK_TIMEOUT_S", "PykkaEcho", "alternate", "in_order", "pinned", "quiet_logs"]

ASK_TIMEOUT_S = 10.0

T = TypeVar("T")


class PykkaEcho(pykka.ThreadingActor):
    """The baseline: the most trivial pykka actor. ``"fail"`` raises.

    ``on_receive`` runs in the actor's thread; the exception goes back to the
    asker (pykka keeps the actor alive after a failed ask).
    """

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise RuntimeError("echo was told to fail")
        return message


class _Discard(logging.Handler):
    """Formats each record (a real handler would) and drops it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep crash tracebacks off stderr, but still pay for formatting them."""
    log = logging.getLogger("mistersmith")
    handler = _Discard()
    saved = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = saved


def alternate(rounds: int) -> Iterator[tuple[int, bool]]:
    """Round numbers, and whether ours goes first in that round (ABBA order)."""
    for i in range(rounds):
        yield i, i % 2 == 0


def in_order(ours_first: bool, ours: Callable[[], T], theirs: Callable[[], T]) -> tuple[T, T]:
    """Run both sides in the given order; return (ours, theirs)."""
    if ours_first:
        mine = ours()
        return mine, theirs()
    other = theirs()
    return ours(), other


def _task_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextmanager
def pinned(enabled: bool) -> Iterator[int | None]:
    """Pin every thread of this process, and the threads they start, to one CPU.

    Yields the CPU, or None when pinning is off or unsupported; restores the
    previous affinity on exit. Whether an actor thread shares its caller's
    CPU swings a round trip by 2-3x, for pykka and for us alike, and it is a
    coin toss per thread: on one CPU the comparison measures what each
    library costs instead of where its threads landed.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    for tid in _task_ids():
        with suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, {cpu})
    try:
        yield cpu
    finally:
        for tid in _task_ids():
            with suppress(OSError):
                os.sched_setaffinity(tid, allowed)


@contextmanager
def serving_process(module: str, args: Sequence[str], timeout_s: float) -> Iterator[subprocess.Popen[str]]:
    """``python -m module serve ARGS...`` (a suite's serving side), once it printed ``ready``; closing its
    stdin on the way out asks it to stop (``timeout_s`` for it to go, then it is killed)."""
    side = subprocess.Popen([sys.executable, "-m", module, "serve", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert side.stdout is not None and side.stdin is not None
        line = side.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the serving process did not start (said {line!r})")
        yield side
    finally:
        if side.stdin is not None:
            side.stdin.close()
        try:
            side.wait(timeout_s)
        except subprocess.TimeoutExpired:
            side.kill()
            side.wait()


def pump_lines(proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None], name: str) -> None:
    """Move each line ``proc`` prints to ``lines`` from a daemon thread called ``name``; ``None`` once it ends."""
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name=name).start()
