"""The wire codec: envelopes, command bodies and replies, as JSON (orjson).

A pure module (no I/O), shared by the NATS bridge and anything that talks to it.

**Envelope.** Every message MisterSmith publishes (status events, heartbeats,
announcements) is a JSON object with exactly the fields ``id``, ``type``,
``ts``, ``source``, ``target``, ``correlation_id`` and ``payload``:

- ``id``: 1-128 printable characters, unique per message;
- ``type``: 1-64 letters, digits, ``_``, ``-`` or ``.``;
- ``ts``: an ISO 8601 time with a UTC offset (``...Z`` or ``...+00:00``);
- ``source``, ``target``, ``correlation_id``: a string (1-256 characters) or ``null``;
- ``payload``: a JSON object.

``id``, ``type``, ``ts`` and ``payload`` are required; the three others may be
left out (they read as ``null``). Any other key is refused. A bad envelope
raises ``EnvelopeError`` (wire code ``invalid_envelope``) naming the field.

**Command bodies.** On ``agents.{id}.commands.{cmd}`` a body is one of:

- empty: the payload is ``{}``;
- an envelope of ``type`` ``"command"`` (recognised by carrying all four
  required envelope fields and nothing but envelope fields), validated strictly;
- any other JSON object: the payload itself, so that
  ``nats req agents.a1.commands.ping '{}'`` works.

Anything else is refused: a body that is not JSON (``invalid_envelope``), or
JSON that is not an object (``invalid_payload``).

**Replies** are ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``: a ``Reply`` value,
encoded by ``encode_reply`` as it is sent and read back by ``decode_reply``
(nothing needs to look at the bytes to tell which it is). The codes a client
should expect are in ``ERROR_CODES``; a handler's own ``CommandError`` may
carry another code, and that goes through unchanged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from mistersmith.errors import MisterSmithError

__all__ = [
    "ENVELOPE_FIELDS",
    "ERROR_CODES",
    "Envelope",
    "EnvelopeError",
    "RemoteError",
    "Reply",
    "decode_command",
    "decode_envelope",
    "decode_json",
    "decode_reply",
    "encode_error",
    "encode_exception",
    "encode_json",
    "encode_ok",
    "encode_reply",
]

ENVELOPE_FIELDS: tuple[str, ...] = ("id", "type", "ts", "source", "target", "correlation_id", "payload")
_REQUIRED = frozenset({"id", "type", "ts", "payload"})
_FIELD_SET = frozenset(ENVELOPE_FIELDS)

ERROR_CODES: tuple[str, ...] = (
    "invalid_envelope",
    "unknown_command",
    "invalid_payload",
    "agent_failed",
    "mailbox_full",
    "restarting",
    "paused",
    "timeout",
    "cancelled",
    "pool_full",
    "unauthorized",
    # further codes the node answers with (the errors module's vocabulary):
    "unknown_agent",
    "unknown_node",
    "already_exists",
    "invalid_spec",
    "start_failed",
    "command_error",
    "invalid_result",
    "unavailable",
    "fenced",
    "breaker_open",
    "invalid_state",
    "state_too_large",
    "closed",
    "internal",
)
"""Every code a MisterSmith node puts in an error reply (a handler's ``CommandError`` may add its own)."""

COMMAND_TYPE = "command"
_ID = re.compile(r"[\x21-\x7e]{1,128}")
_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME_MAX = 256


class EnvelopeError(MisterSmithError, ValueError):
    """A message is not a valid envelope (or not JSON at all). Names the field and the rule."""

    code = "invalid_envelope"

    def __init__(self, field_name: str | None, problem: str, *, code: str | None = None) -> None:
        where = f"field {field_name!r}: " if field_name else ""
        what = "invalid payload" if code == "invalid_payload" else "invalid envelope"
        super().__init__(f"{what}: {where}{problem}")
        if code is not None:
            self.code = code
        self.field = field_name
        self.problem = problem


class RemoteError(MisterSmithError):
    """An error reply from a node: its wire ``code`` and ``message``, unchanged."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteError, (self.code, self.message))


def decode_json(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; ``EnvelopeError`` if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(None, f"not JSON ({exc})") from None


def encode_json(value: Any) -> bytes:
    """Serialise to JSON; ``TypeError`` (orjson's ``JSONEncodeError``) if it cannot be."""
    return orjson.dumps(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _check_name(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= _NAME_MAX:
        raise EnvelopeError(name, f"{_show(value)} should be null or a string of 1-{_NAME_MAX} characters")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_ts(value: object) -> datetime:
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise EnvelopeError("ts", f"{_show(value)} is not an ISO 8601 time") from None
    else:
        raise EnvelopeError("ts", f"{_show(value)} should be an ISO 8601 time string")
    if ts.tzinfo is None:
        raise EnvelopeError("ts", f"{_show(value)} has no UTC offset; add 'Z' or '+00:00'")
    return ts


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message. Every field is validated on construction (``EnvelopeError``)."""

    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)
    ts: datetime = field(default_factory=_now)
    source: str | None = None
    target: str | None = None
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise EnvelopeError("id", f"{_show(self.id)} should be 1-128 printable ASCII characters, no spaces")
        if not isinstance(self.type, str) or not _TYPE.fullmatch(self.type):
            raise EnvelopeError("type", f"{_show(self.type)} should be 1-64 letters, digits, '_', '-' or '.'")
        object.__setattr__(self, "ts", _parse_ts(self.ts))
        _check_name("source", self.source)
        _check_name("target", self.target)
        _check_name("correlation_id", self.correlation_id)
        if not isinstance(self.payload, Mapping):
            raise EnvelopeError("payload", f"{_show(self.payload)} should be a JSON object")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible wire form."""
        return {
            "id": self.id,
            "type": self.type,
            "ts": self.ts.isoformat(),
            "source": self.source,
            "target": self.target,
            "correlation_id": self.correlation_id,
            "payload": dict(self.payload),
        }

    def encode(self) -> bytes:
        """The JSON bytes; ``TypeError`` if the payload is not JSON-serialisable."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: object) -> Envelope:
        """Validate strictly and build: exactly the envelope fields, the required ones present."""
        if not isinstance(raw, dict):
            raise EnvelopeError(None, f"{type(raw).__name__} is not a JSON object")
        unknown = sorted(set(raw) - _FIELD_SET)
        if unknown:
            raise EnvelopeError(unknown[0], f"is not an envelope field; use only: {', '.join(ENVELOPE_FIELDS)}")
        missing = sorted(_REQUIRED - set(raw))
        if missing:
            raise EnvelopeError(missing[0], "is required")
        if not isinstance(raw["ts"], str):
            raise EnvelopeError("ts", f"{_show(raw['ts'])} should be an ISO 8601 time string")
        if not isinstance(raw["payload"], dict):
            raise EnvelopeError("payload", f"{_show(raw['payload'])} should be a JSON object")
        return cls(
            type=raw["type"],
            payload=raw["payload"],
            id=raw["id"],
            ts=_parse_ts(raw["ts"]),
            source=raw.get("source"),
            target=raw.get("target"),
            correlation_id=raw.get("correlation_id"),
        )


def decode_envelope(data: bytes | bytearray | memoryview | str) -> Envelope:
    """Parse and validate one envelope; ``EnvelopeError`` if it is not one."""
    return Envelope.from_dict(decode_json(data))


def _looks_like_envelope(raw: dict[str, Any]) -> bool:
    keys = raw.keys()
    return _REQUIRED <= keys and keys <= _FIELD_SET


def decode_command(data: bytes | bytearray | memoryview | str) -> tuple[dict[str, Any], Envelope | None]:
    """A command body's payload, and its envelope if it came in one (see the module doc).

    Raises ``EnvelopeError``: code ``invalid_envelope`` for a body that is not
    JSON or a bad envelope, code ``invalid_payload`` for JSON that is not an object.
    """
    if not data:
        return {}, None
    raw = decode_json(data)
    if not isinstance(raw, dict):
        raise EnvelopeError(None, f"the payload must be a JSON object, not {_json_type(raw)}", code="invalid_payload")
    if not _looks_like_envelope(raw):
        return raw, None
    envelope = Envelope.from_dict(raw)
    if envelope.type != COMMAND_TYPE:
        raise EnvelopeError("type", f"{envelope.type!r} on a command subject; use {COMMAND_TYPE!r}")
    return dict(envelope.payload), envelope


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


# -- replies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply as a value: ``ok`` and ``result``, or ``ok=False`` and the ``error``.

    The bridge decides on this value (an error reply is counted, a shutdown
    that was answered ok goes ahead) and encodes it only as it sends it
    (``encode_reply``); ``decode_reply`` turns bytes back into one.
    """

    ok: bool
    result: Any = None
    error: RemoteError | None = None

    def __post_init__(self) -> None:
        if self.ok != (self.error is None):
            raise ValueError("an error reply carries its error (a RemoteError), a success reply none")

    @classmethod
    def success(cls, result: Any) -> Reply:
        return cls(True, result)

    @classmethod
    def failure(cls, code: str, message: str) -> Reply:
        return cls(False, None, RemoteError(code, message))

    @classmethod
    def from_exception(cls, exc: BaseException) -> Reply:
        """A ``MisterSmithError`` keeps its code; anything else is ``internal``."""
        if isinstance(exc, MisterSmithError):
            return cls.failure(str(exc.code), exc.message)
        return cls.failure("internal", f"{type(exc).__name__}: {exc}")

    def unwrap(self) -> Any:
        """The result; raises the ``RemoteError`` of an error reply."""
        if self.error is not None:
            raise self.error
        return self.result


def encode_reply(reply: Reply) -> tuple[Reply, bytes]:
    """The reply that goes on the wire, and its bytes: ``{"ok": true, "result": ...}`` or
    ``{"ok": false, "error": {"code": ..., "message": ...}}``. A success whose result is not
    JSON goes as an ``invalid_result`` error reply instead, and that is the reply returned."""
    if reply.ok:
        try:
            return reply, orjson.dumps({"ok": True, "result": reply.result})
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            reply = Reply.failure("invalid_result", f"the result is not JSON-serialisable: {exc}")
    assert reply.error is not None
    return reply, orjson.dumps({"ok": False, "error": {"code": reply.error.code, "message": reply.error.message}})


def encode_ok(result: Any) -> bytes:
    """``{"ok": true, "result": ...}``; an ``invalid_result`` error reply if ``result`` is not JSON."""
    return encode_reply(Reply.success(result))[1]


def encode_error(code: str, message: str) -> bytes:
    """``{"ok": false, "error": {"code": ..., "message": ...}}``."""
    return encode_reply(Reply.failure(code, message))[1]


def encode_exception(exc: BaseException) -> bytes:
    """The error reply for an exception: a ``MisterSmithError`` keeps its code, anything else is ``internal``."""
    return encode_reply(Reply.from_exception(exc))[1]


def decode_reply(data: bytes | bytearray | memoryview | str) -> Reply:
    """Parse and validate a reply; ``EnvelopeError`` if it does not have one of the two shapes."""
    raw = decode_json(data)
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        raise EnvelopeError("ok", "a reply is an object with a boolean 'ok'")
    if raw["ok"]:
        if set(raw) != {"ok", "result"}:
            raise EnvelopeError(None, "a success reply has exactly the keys 'ok' and 'result'")
        return Reply(True, raw["result"])
    error = raw.get("error")
    if set(raw) != {"ok", "error"} or not isinstance(error, dict):
        raise EnvelopeError("error", "an error reply has exactly the keys 'ok' and 'error' (an object)")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str) or set(error) != {"code", "message"}:
        raise EnvelopeError("error", "the error object has exactly a string 'code' and a string 'message'")
    return Reply(False, None, RemoteError(code, message))
