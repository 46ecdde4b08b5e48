"""Journal rows, encoded and decoded: pure functions, no I/O.

An event is encoded once, when it is emitted, as one line of PostgreSQL's
``COPY ... FROM STDIN`` text format, in ``COLUMNS`` order. That line is what
the spool stores (``spool.py`` frames it) and what the writer streams to
``COPY`` unchanged, so shipping does no per-row work in Python.

Text rules (PostgreSQL's): ``\\N`` is NULL; backslash, tab, newline and
carriage return are escaped. Two things PostgreSQL cannot store are replaced
rather than allowed to poison the writer: NUL characters (by U+FFFD) and
unpaired surrogates (by ``?``). Values in ``data`` that JSON cannot express
are written as their ``str()``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from mistersmith.supervisors import SupervisionEvent

__all__ = [
    "COLUMNS",
    "SELECT_COLUMNS",
    "JournalLine",
    "current_line",
    "decode_line",
    "encode_data",
    "encode_line",
    "event_from_row",
]

# The order of a COPY line; the table's own columns seq and recorded_at are filled by PostgreSQL.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "node_id",
    "node_seq",
    "supervisor",
    "agent_id",
    "kind",
    "event_type",
    "reason",
    "restart_count",
    "data",
    "trace_id",
)
# What replay selects, in the order ``event_from_row`` reads.
SELECT_COLUMNS: tuple[str, ...] = (
    "seq",
    "event_id",
    "occurred_at",
    "node_id",
    "supervisor",
    "agent_id",
    "kind",
    "event_type",
    "reason",
    "restart_count",
    "data",
    "trace_id",
)

_NULL = "\\N"
_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r", 0: "\ufffd"}
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r\x00]")
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPES = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}


def _text(value: str | None) -> str:
    if value is None:
        return _NULL
    # isprintable() is False for tab, newline, carriage return and NUL (and a few harmless others)
    if ("\\" in value or not value.isprintable()) and _NEEDS_ESCAPE.search(value):
        return value.translate(_ESCAPES)
    return value


def _json_default(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def encode_data(data: Mapping[str, Any]) -> bytes:
    """``data`` as JSON that ``jsonb`` accepts (no ``\\u0000``)."""
    try:
        raw = orjson.dumps(data if type(data) is dict else dict(data), default=_json_default,
                           option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # unpaired surrogates, or an object too deep
        raw = orjson.dumps({"unencodable": repr(data).encode("utf-8", "replace").decode("utf-8")})
    if b"\\u0000" in raw:
        raw = raw.replace(b"\\u0000", b"\\ufffd")
    return raw


def encode_line(event: SupervisionEvent) -> bytes:
    """One ``COPY`` text line (ending in a newline) for ``event``."""
    data = encode_data(event.data)
    if b"\\" in data:
        data = data.replace(b"\\", b"\\\\")
    head = "\t".join(
        (
            event.event_id.hex,  # PostgreSQL's uuid input takes the 32 digits without hyphens
            event.occurred_at.isoformat(),
            _text(event.node_id),
            str(event.seq),
            _text(event.supervisor),
            _text(event.agent_id),
            _text(event.kind),
            _text(event.event_type),
            _text(event.reason),
            str(event.restart_count),
        )
    )
    return b"".join((head.encode("utf-8", "replace"), b"\t", data, b"\t",
                     _text(event.trace_id).encode("utf-8", "replace"), b"\n"))


def current_line(line: bytes) -> bytes:
    """A spooled line in today's shape: one written before events had a trace id gets a NULL one."""
    return line if line.count(b"\t") == len(COLUMNS) - 1 else line[:-1] + b"\t\\N\n"


def _unescape(raw: bytes) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), raw).decode("utf-8")


def decode_line(line: bytes, seq: int | None = None) -> SupervisionEvent:
    """The event a line encodes; ``seq`` is the journal's seq (default: the node's own)."""
    view = JournalLine(line)
    return SupervisionEvent(
        event_id=uuid.UUID(view.event_id),
        seq=view.node_seq if seq is None else seq,
        occurred_at=view.occurred_at,
        node_id=view.node_id,
        supervisor=view.supervisor,
        agent_id=view.agent_id,
        kind=view.kind,
        event_type=view.event_type,
        reason=view.reason,
        restart_count=view.restart_count,
        data=view.data,
        trace_id=view.trace_id,
    )


class JournalLine:
    """A spooled line, parsed just enough for the registry fold (the writer's hot path).

    Has the attributes of a ``SupervisionEvent`` the fold reads (``seq`` is
    the node's own number); ``data`` is parsed on first use and ``event_id``
    stays text.
    """

    __slots__ = ("_data", "_event_id", "agent_id", "event_type", "kind", "node_id", "node_seq", "occurred_at",
                 "reason", "restart_count", "seq", "supervisor", "trace_id")

    def __init__(self, line: bytes) -> None:
        fields = line.rstrip(b"\n").split(b"\t")
        if len(fields) == len(COLUMNS) - 1:  # spooled before events had a trace id
            fields.append(b"\\N")
        if len(fields) != len(COLUMNS):
            raise ValueError(f"a journal line has {len(COLUMNS)} fields, this one {len(fields)}: {line[:200]!r}")
        node_id, supervisor, agent_id, kind, event_type, reason = [
            None if raw == b"\\N" else raw.decode("utf-8") if b"\\" not in raw else _unescape(raw)
            for raw in (fields[2], fields[4], fields[5], fields[6], fields[7], fields[8])
        ]
        self._event_id = fields[0].decode("ascii")
        self.occurred_at = datetime.fromisoformat(fields[1].decode("ascii"))
        self.node_id = node_id or ""
        self.seq = self.node_seq = int(fields[3])
        self.supervisor = supervisor or ""
        self.agent_id = agent_id
        self.kind = kind
        self.event_type = event_type or ""
        self.reason = reason
        self.restart_count = int(fields[9])
        self._data: bytes | dict[str, Any] = fields[10]
        self.trace_id = None if fields[11] == b"\\N" else fields[11].decode("ascii", "replace")

    @property
    def event_id(self) -> str:
        """The event's id, as text in the canonical hyphenated form (``str(uuid)``)."""
        raw = self._event_id
        if len(raw) == 32:  # written without hyphens
            return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
        return raw

    @property
    def data(self) -> dict[str, Any]:
        raw = self._data
        if isinstance(raw, bytes):
            if b"\\" in raw:
                raw = raw.replace(b"\\\\", b"\\")
            self._data = raw = orjson.loads(raw) if raw != b"{}" else {}
        return raw


def event_from_row(row: Sequence[Any]) -> SupervisionEvent:
    """A replayed row (``SELECT_COLUMNS`` order) as an event; ``seq`` is the journal's."""
    return SupervisionEvent(
        event_id=row[1],
        seq=row[0],
        occurred_at=row[2],
        node_id=row[3],
        supervisor=row[4],
        agent_id=row[5],
        kind=row[6],
        event_type=row[7],
        reason=row[8],
        restart_count=row[9],
        data=row[10],
        trace_id=row[11],
    )
