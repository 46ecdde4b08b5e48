"""The NATS headers of a command request and its replies, stated once. Pure.

A request on ``agents.<id>.commands.<cmd>`` may carry:

- ``MS-Deadline``: when its caller stops waiting, absolute Unix time in
  milliseconds (our clients set it from their timeout). A command whose caller
  has already given up is never started, and a running one is cancelled when
  the deadline passes;
- ``Mistersmith-Timeout``: the same, as seconds from now (older clients);
- ``MS-Stream: 1``: send each progress item on the reply inbox as it is
  produced, marked ``MS-Kind: progress``, then the final reply, marked
  ``MS-Kind: result``. Without it only the final reply is sent;
- ``MS-Correlation-Id``: the id to cancel it by (``agents.<id>.control.cancel``)
  when the body is no envelope (an envelope's own ``correlation_id`` wins).

A streamed result carries ``MS-Dropped: N`` when the node had to drop N
progress items because the reader fell too far behind (it keeps 65,536).

A progress message's body is ``{"data": ..., "done": ..., "total": ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "CORRELATION",
    "DEADLINE",
    "DROPPED",
    "KIND",
    "KIND_PROGRESS",
    "KIND_RESULT",
    "STREAM",
    "TIMEOUT",
    "caller_timeout_s",
    "decode_progress",
    "deadline_headers",
    "encode_progress",
]

DEADLINE = "MS-Deadline"
TIMEOUT = "Mistersmith-Timeout"
STREAM = "MS-Stream"
KIND = "MS-Kind"
KIND_PROGRESS = "progress"
KIND_RESULT = "result"
CORRELATION = "MS-Correlation-Id"
DROPPED = "MS-Dropped"


def deadline_headers(timeout_s: float, *, now_s: float | None = None) -> dict[str, str]:
    """The headers that tell a node how long a caller waits (both forms)."""
    now = time.time() if now_s is None else now_s
    return {DEADLINE: str(int((now + timeout_s) * 1000)), TIMEOUT: f"{timeout_s:g}"}


def caller_timeout_s(headers: Mapping[str, str] | None, bound_s: float, *, now_s: float | None = None) -> float:
    """How long the caller still waits: the nearer of ``MS-Deadline`` and ``Mistersmith-Timeout``, at most
    ``bound_s``. Zero or less: it has already given up. A malformed value is ignored (``bound_s``)."""
    if not headers:
        return bound_s
    wait_s = bound_s
    raw = headers.get(TIMEOUT)
    if raw is not None:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0:
            wait_s = min(wait_s, value)
    raw = headers.get(DEADLINE)
    if raw is not None:
        try:
            deadline_ms = int(raw)
        except ValueError:
            return wait_s
        now = time.time() if now_s is None else now_s
        wait_s = min(wait_s, deadline_ms / 1000.0 - now)
    return wait_s


def encode_progress(data: Any, done: float | None, total: float | None) -> bytes:
    """One progress message's body; ``TypeError`` if ``data`` is not JSON-compatible."""
    return orjson.dumps({"data": data, "done": done, "total": total})


def decode_progress(body: bytes) -> dict[str, Any]:
    """A progress message's body as a dict with ``data``, ``done``, ``total``; ``ValueError`` if it is none."""
    raw = orjson.loads(body)
    if not isinstance(raw, dict) or "data" not in raw:
        raise ValueError(f"not a progress message: {body[:200]!r}")
    return raw
