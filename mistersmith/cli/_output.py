"""How a command prints: a readable text for people, JSON with ``--json``.

Results go to stdout; errors to stderr as one line (``mistersmith: <what>``),
and with ``--json`` also to stdout as ``{"error": {"code", "message"}, "exit_code"}``
so a script reading stdout sees them. Streams (``replay``) print one JSON
object per line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from ._errors import CliError

__all__ = ["Output", "stamp", "table"]


def _default(value: object) -> str:
    return str(value)


class Output:
    """Where and how one command run prints."""

    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json = json_mode
        self._out = stdout
        self._err = stderr

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def result(self, data: Any, human: str | Callable[[], str]) -> None:
        """The command's result: ``data`` as indented JSON, or the human text."""
        if self.json:
            self.out.write(orjson.dumps(data, default=_default, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            text = human() if callable(human) else human
            if text:
                self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    def record(self, data: Any, human: str) -> None:
        """One item of a stream: a compact JSON line, or the human line."""
        line = orjson.dumps(data, default=_default).decode() if self.json else human
        self.out.write(line + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Something for the person at the terminal only (stderr; never with ``--json``)."""
        if not self.json:
            self.err.write(text + "\n")
            self.err.flush()

    def error(self, error: CliError) -> None:
        """One line on stderr; with ``--json``, the error object on stdout too."""
        message = " ".join(error.message.split())  # one line, whatever the message held
        self.err.write(f"mistersmith: {message}\n")
        self.err.flush()
        if self.json:
            doc = {"error": {"code": error.code, "message": message}, "exit_code": error.exit_code}
            self.out.write(orjson.dumps(doc).decode() + "\n")
            self.out.flush()


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table (``-`` for missing values)."""
    cells = [[str(h) for h in head]] + [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stamp(when: datetime) -> str:
    """A time as every command prints it: UTC, to the millisecond (``2026-11-24 09:44:50.588Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
