"""State as JSON bytes: encode once, check size and type, say where a bad value sits. Pure.

``encode_state`` is what every store receives. A value JSON cannot hold (a set,
a datetime, bytes, a non-str key, an int past 64 bits, a NUL character that
PostgreSQL's jsonb refuses) is an ``InvalidStateError`` naming its path and
type; an encoding larger than the limit is a ``StateTooLargeError``. JSON has no
NaN or infinity: such a float is stored as ``null`` (orjson's rule; checking
every float would cost a walk of the whole state on each commit).
"""

from __future__ import annotations

from typing import Any

import orjson

from mistersmith.errors import InvalidStateError, StateTooLargeError

__all__ = ["decode_state", "encode_state", "find_bad_value"]

_NUL = b"\\u0000"
# orjson writes datetimes and dataclasses as strings and objects by itself; a state holding one would
# come back as something else, so refuse them as the types JSON has not (no `default`: a TypeError).
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def find_bad_value(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, type name)`` of the first value in ``value`` that JSON (and jsonb) cannot hold, or None."""
    if value is None or isinstance(value, (bool, str)):
        return (path, "a str holding a NUL character") if isinstance(value, str) and "\x00" in value else None
    if isinstance(value, int):
        return None if -(1 << 63) <= value < (1 << 64) else (path, "an int past 64 bits")
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}[{key!r}]", f"a {type(key).__name__} key"
            if "\x00" in key:
                return f"{path}[{key!r}]", "a key holding a NUL character"
            found = find_bad_value(item, f"{path}[{key!r}]")
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = find_bad_value(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return path, f"a {type(value).__name__}"


def encode_state(agent_id: str, value: Any, limit: int | None = None, *, what: str = "state") -> bytes:
    """The JSON bytes of ``value``; raises ``InvalidStateError`` or ``StateTooLargeError`` (nothing written)."""
    if what == "state" and not isinstance(value, dict):
        raise InvalidStateError(agent_id, what, f"a {type(value).__name__}, not a dict", what)
    try:
        data = orjson.dumps(value, option=_STRICT)
    except TypeError:
        data = b""
    if not data or _NUL in data:
        found = find_bad_value(value, what) or (what, type(value).__name__)
        raise InvalidStateError(agent_id, found[0], found[1], what)
    if limit is not None and len(data) > limit:
        raise StateTooLargeError(agent_id, len(data), limit)
    return data


def decode_state(data: bytes | None) -> dict[str, Any]:
    """A committed state's dict (``{}`` for nothing committed)."""
    if not data:
        return {}
    out = orjson.loads(data)
    return out if isinstance(out, dict) else {}
