"""W3C trace context in NATS headers (``traceparent``, ``tracestate``). Pure code.

A request's ``traceparent`` travels with it: the bridge validates it, logs the
trace id with what it does for the request, and puts the same header (and
``tracestate``) on the reply, so a tracing caller can join the two.
An invalid ``traceparent`` is ignored (as the W3C spec says), never refused.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

__all__ = ["TRACEPARENT", "TRACESTATE", "new_traceparent", "trace_headers", "trace_id"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_PARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[0-9a-f-]*)?")


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a valid ``traceparent``, else ``None``."""
    if not traceparent:
        return None
    m = _PARENT.fullmatch(traceparent.strip())
    if m is None:
        return None
    version, trace, parent = m.group(1), m.group(2), m.group(3)
    if version == "ff" or (version == "00" and m.group(5)) or trace == "0" * 32 or parent == "0" * 16:
        return None
    return trace


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The trace headers to carry on, from a message's headers (``None`` if there is no valid one)."""
    if not headers:
        return None
    parent = headers.get(TRACEPARENT)
    if trace_id(parent) is None:
        return None
    assert parent is not None
    out = {TRACEPARENT: parent.strip()}
    state = headers.get(TRACESTATE)
    if state:
        out[TRACESTATE] = state
    return out


def new_traceparent(sampled: bool = True) -> str:
    """A fresh ``traceparent`` (version 00), e.g. for a client that starts a trace."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"
