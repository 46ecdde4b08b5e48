"""Logging set-up for the ``mistersmith`` command: ``pretty`` or ``json`` lines.

Library code only ever logs through ``logging.getLogger("mistersmith...")``
with structured fields in ``extra`` (agent_id, supervisor, event_type, reason,
trace_id); this module decides how a node's process prints them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson

__all__ = ["FIELDS", "JsonFormatter", "PrettyFormatter", "configure_logging"]

FIELDS = ("agent_id", "supervisor", "event_type", "reason", "trace_id", "node_id")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {f: getattr(record, f) for f in FIELDS if getattr(record, f, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the structured fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class PrettyFormatter(logging.Formatter):
    """``12:00:01.234 INFO  mistersmith.agent  message  agent_id=a1 ...``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}  {record.getMessage()}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "pretty", stream: TextIO | None = None) -> None:
    """Send the ``mistersmith`` loggers (and pykka's) to ``stream`` in the given format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PrettyFormatter())
    for name in ("mistersmith", "pykka"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
