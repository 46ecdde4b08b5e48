"""The JSON Schemas of the MCP tools' arguments and results (draft 2020-12). Data only."""

from __future__ import annotations

from typing import Any

from mistersmith.discovery import CONTENT_MAX_CHARS, DISCOVERY_TYPES, ROLE_MAX_CHARS
from mistersmith.ids import ID_PATTERN
from mistersmith.supervisors import EVENT_TYPES, RESTARTS

__all__ = [
    "AGENT",
    "DISCOVERY",
    "EVENT",
    "ID",
    "LIMIT",
    "MAX_COMMAND_TIMEOUT_S",
    "obj",
]

MAX_COMMAND_TIMEOUT_S = 30.0
# ids.ID_PATTERN ends in "(?![\s\S])", not "$" (which lets "abc\n" pass in Python's re).
ID: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True) -> dict[str, Any]:
    """An object schema; ``closed``: no other keys (for arguments)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


AGENT = obj(
    {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "kind": {"type": "string"},
        "supervisor": {"type": "string"},
        "state": {"type": "string"},
        "restart": {"type": "string", "enum": list(RESTARTS)},
        "restart_count": {"type": "integer", "minimum": 0},
        "paused": {"type": "boolean"},
        "mailbox_depth": {"type": "integer", "minimum": 0},
        "config": {"type": "object"},
        "breakers": {"type": "object", "description": "each circuit breaker's state, failures, retry_after_s..."},
        "node_id": {"type": "string"},
        "last_exit": {"type": "string"},
    },
    ("id", "kind", "state", "restart_count"),
    closed=False,
)

DISCOVERY_IN: dict[str, Any] = {
    "agent_id": {**ID, "description": "the sharing agent"},
    "agent_role": {"type": "string", "minLength": 1, "maxLength": ROLE_MAX_CHARS},
    "discovery_type": {"type": "string", "enum": list(DISCOVERY_TYPES)},
    "content": {"type": "string", "minLength": 1, "maxLength": CONTENT_MAX_CHARS},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "related_to": {**ID, "description": "the id of a discovery this one builds on"},
}

DISCOVERY = obj(
    {
        **DISCOVERY_IN,
        "id": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1},
        "related_to": {"type": ["string", "null"]},
        "occurred_at": {"type": "string"},
        "source": {"type": "string", "description": "who vouches for it: node:<node_id>, nats:<node_id> "
                                                    "(heard on NATS by that node) or unknown"},
    },
    ("id", "seq", "agent_id", "agent_role", "discovery_type", "content", "confidence", "occurred_at"),
    closed=False,
)

EVENT = obj(
    {
        "event_id": {"type": "string"},
        "seq": {"type": "integer"},
        "occurred_at": {"type": "string"},
        "node_id": {"type": "string"},
        "supervisor": {"type": "string"},
        "agent_id": {"type": ["string", "null"]},
        "kind": {"type": ["string", "null"]},
        "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
        "reason": {"type": ["string", "null"]},
        "restart_count": {"type": "integer"},
        "data": {"type": "object"},
    },
    ("seq", "occurred_at", "event_type"),
    closed=False,
)

EVENT_TYPE_LIST: dict[str, Any] = {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)},
                                   "minItems": 1, "uniqueItems": True}
DISCOVERY_TYPE_LIST: dict[str, Any] = {"type": "array", "items": {"type": "string", "enum": list(DISCOVERY_TYPES)},
                                       "minItems": 1, "uniqueItems": True}
