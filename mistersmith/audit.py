"""The audit trail's vocabulary: who acts, through which door, and what one entry says. Pure code.

Every control action (``ACTIONS``) from any door is recorded by the Runtime,
the one place every door passes through (``mistersmith.runtime._audited``),
into whatever ``AuditRecorder`` it was given (a node: the journal's
``AuditLog``, an append-only ``audit_log`` table). The door sets who is acting
for the calls it makes (``acting``), a context variable, so nothing in
between carries it:

- HTTP and MCP: the Guard, with the token's name (``http`` or ``mcp``);
- NATS: the bridge's handlers (``nats``; ``cli`` when the client says it is the CLI);
- anything else is a program calling the Runtime itself: ``library``.

The node's own work (recovery, takeover, the task pools) runs ``internal()``:
it is in the supervision journal, and is not an action of anyone's.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "ACTIONS",
    "DOORS",
    "LIBRARY",
    "Actor",
    "AuditEntry",
    "AuditRecorder",
    "acting",
    "current_actor",
    "internal",
    "outcome_of",
]

ACTIONS: tuple[str, ...] = ("spawn", "stop", "restart", "drain", "rebalance", "shutdown", "cancel",
                            "state_reset", "command")
DOORS: tuple[str, ...] = ("http", "mcp", "nats", "cli", "library")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: the door, the actor's name (a token name, a NATS user, ``library``), the trace id."""

    door: str
    name: str
    trace_id: str | None = None


LIBRARY = Actor("library", "library")
_INTERNAL = Actor("internal", "internal")
_ACTOR: contextvars.ContextVar[Actor] = contextvars.ContextVar("mistersmith_actor", default=LIBRARY)


def current_actor() -> Actor | None:
    """Who the calls made now act for; None inside ``internal()``."""
    actor = _ACTOR.get()
    return None if actor is _INTERNAL else actor


@contextmanager
def acting(door: str, name: str, trace_id: str | None = None) -> Iterator[Actor]:
    """Calls made inside act for ``name`` through ``door`` (in this thread or task, and tasks it starts)."""
    actor = Actor(door, name, trace_id)
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


@contextmanager
def internal() -> Iterator[None]:
    """The node's own work (recovery, takeover, task pools): not recorded."""
    token = _ACTOR.set(_INTERNAL)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def outcome_of(exc: BaseException | None) -> str:
    """``ok``, or the error's wire code (``unknown_agent``, ``timeout``...), or its type's name."""
    if exc is None:
        return "ok"
    code = getattr(exc, "code", None)
    return str(code) if isinstance(code, str) and code else type(exc).__name__


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: ``target`` is the agent id (or supervisor path, or node);
    ``detail`` the command sent, or the kind spawned; ``outcome`` ``ok`` or an error code."""

    node_id: str
    actor: str
    door: str
    action: str
    target: str
    outcome: str
    detail: str | None = None
    trace_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    audit_id: uuid.UUID | None = None
    """None: one is drawn when the entry is written (off the caller's thread: ``uuid4`` costs a syscall)."""

    def to_dict(self) -> dict[str, Any]:
        return {"audit_id": None if self.audit_id is None else str(self.audit_id), "at": self.at.isoformat(), "node_id": self.node_id,
                "actor": self.actor, "door": self.door, "action": self.action, "target": self.target,
                "outcome": self.outcome, "detail": self.detail, "trace_id": self.trace_id}


class AuditRecorder(Protocol):
    """Takes entries without blocking (any thread, the event loop included); it never raises."""

    record_commands: bool
    """Whether command sends are recorded (the ``audit.commands`` setting)."""

    def record(self, entry: AuditEntry) -> None: ...
