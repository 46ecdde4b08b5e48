"""``mistersmith bench``: the benchmark suites of ``mistersmith.bench``, with a progress display.

On a terminal, one status line is redrawn in place (suite, step, elapsed
time); elsewhere each step is one plain line. Progress always goes to
stderr, so stdout holds only the figures (a table, or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from typing import TextIO

from mistersmith.bench import SUITES, Figure, Options
from mistersmith.bench._cli import BASELINES
from mistersmith.bench._report import machine, render_json, render_table

from ._output import Output

__all__ = ["ProgressDisplay", "run_bench"]

ALL = "all"
_SPINNER = "|/-\\"
_TICK_S = 0.2


class ProgressDisplay:
    """Shows what a suite is doing; call ``step`` with each progress message, ``close`` at the end."""

    def __init__(self, stream: TextIO, *, live: bool, quiet: bool = False) -> None:
        self.stream = stream
        self.live = live
        self.quiet = quiet
        self.suite = ""
        self.message = ""
        self._started = time.monotonic()
        self._suite_started = self._started
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0
        if live and not quiet:
            self._ticker = threading.Thread(target=self._tick, name="mistersmith-cli-progress", daemon=True)
            self._ticker.start()

    def begin(self, suite: str, index: int, total: int) -> None:
        with self._lock:
            self.suite = f"{suite} ({index}/{total})"
            self.message = "starting"
            self._suite_started = time.monotonic()
        self._show(newline=not self.live)

    def step(self, message: str) -> None:
        with self._lock:
            self.message = message.strip()
        self._show(newline=not self.live)

    def end(self, suite: str, figures: list[Figure]) -> None:
        took = time.monotonic() - self._suite_started
        missed = sum(1 for f in figures if f.passed is False)
        verdict = f"{len(figures)} figures" + (f", {missed} missed their target" if missed else "")
        self._write(f"[bench] {suite} done in {took:.1f} s: {verdict}", final=True)

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        self._clear()

    def _line(self) -> str:
        spin = _SPINNER[int((time.monotonic() - self._started) / _TICK_S) % len(_SPINNER)] if self.live else "-"
        elapsed = time.monotonic() - self._suite_started
        line = f"[bench] {spin} {self.suite} {elapsed:5.1f} s  {self.message}"
        if self.live:  # one terminal row, or the carriage return cannot redraw it
            width = shutil.get_terminal_size().columns - 1
            line = line if len(line) <= width else line[: max(width - 3, 0)] + "..."
        return line

    def _show(self, *, newline: bool) -> None:
        with self._lock:
            line = self._line()
        self._write(line, final=newline)

    def _write(self, text: str, *, final: bool) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.live:
                self.stream.write("\r" + " " * self._width + "\r")
                self._width = 0
            if final or not self.live:
                self.stream.write(text + "\n")
            else:
                self.stream.write(text)
                self._width = len(text)
            self.stream.flush()

    def _clear(self) -> None:
        if self.live and not self.quiet and self._width:
            with self._lock:
                self.stream.write("\r" + " " * self._width + "\r")
                self._width = 0
                self.stream.flush()

    def _tick(self) -> None:
        while not self._done.wait(_TICK_S):
            if self.suite:
                self._show(newline=False)


def run_bench(args: argparse.Namespace, out: Output) -> int:
    names = list(SUITES) if args.suite == ALL else [args.suite]
    display = ProgressDisplay(out.err, live=out.err.isatty(), quiet=args.quiet)
    results: list[tuple[str, list[Figure]]] = []
    try:
        for index, name in enumerate(names, 1):
            display.begin(name, index, len(names))
            figures = SUITES[name](Options(quick=args.quick, pin=args.pin, progress=display.step))
            display.end(name, figures)
            results.append((name, figures))
    finally:
        display.close()
    info = machine()

    def human() -> str:
        flags = "".join(f" {flag}" for flag, on in (("--quick", args.quick), ("--no-pin", not args.pin)) if on)
        load = ", ".join(f"{x:.2f}" for x in info["loadavg"])
        parts = [f"# mistersmith bench {args.suite}{flags}",
                 f"# {info['nproc']} CPUs, Python {info['python']}, pykka {info['pykka']}, load average {load}"]
        parts += [f"\n## {name}\n\n{render_table(figures, BASELINES.get(name, 'baseline'))}"
                  for name, figures in results]
        if args.quick:
            parts.append("\n(--quick: small sizes for smoke tests; these are not the figures)")
        return "\n".join(parts)

    out.result(render_json(args.suite, args.quick, results, info), human)
    return 0
