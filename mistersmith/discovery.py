"""Discoveries: what agents share with each other, as frozen, validated values.

A pure module (no I/O): the web shim, the NATS bridge and the journal all
speak these shapes. ``Discovery.to_dict`` is the wire form (on NATS subject
``discoveries.{agent_id}.{discovery_type}``, in SSE events, in MCP tool
results); ``Discovery.from_dict`` is its validating inverse.

``seq`` is the order in which the store accepted the discovery (the id of an
SSE event, what ``Last-Event-ID`` resumes after); it is ``None`` until then.
``id`` is the discovery's global identity, made by whoever shares it.

``source`` says who vouches for it, and is set by the node that stores it,
never taken from a message: ``node:<node_id>`` for one shared through that
node (``DiscoveryHub.share``), ``nats:<node_id>`` for one that node ingested
from a NATS message no node had stored (NATS does not tell a subscriber who
published), ``unknown`` before it is stored (and for rows stored before
sources were recorded). ``agent_id``, ``id`` and ``occurred_at`` of a
``nats:`` discovery are whatever its publisher claimed.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mistersmith.errors import SpecError
from mistersmith.ids import ID_CHARS, check_id
from mistersmith.subjects import render

__all__ = [
    "CONTENT_MAX_CHARS",
    "DISCOVERY_TYPES",
    "MAX_AHEAD_S",
    "ROLE_MAX_CHARS",
    "UNKNOWN_SOURCE",
    "Discovery",
    "DiscoveryFilter",
    "discovery_subject",
    "refuse_future",
]

DISCOVERY_TYPES: tuple[str, ...] = ("pattern", "anomaly", "connection", "solution", "question", "insight")
CONTENT_MAX_CHARS = 16_384
ROLE_MAX_CHARS = 128
UNKNOWN_SOURCE = "unknown"
MAX_AHEAD_S = 300.0
"""How far ahead of the storing node's clock ``occurred_at`` may be (clock skew); later is refused."""

_SOURCE = re.compile(rf"(?:unknown|(?:node|nats):{ID_CHARS})")
_FIELDS = ("id", "seq", "agent_id", "agent_role", "discovery_type", "content", "confidence", "related_to",
           "occurred_at", "source")


def _text(key: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise SpecError(None, key, value if not isinstance(value, str) else value[:80],
                        f"use a non-blank string of at most {limit} characters")
    return value


def _confidence(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise SpecError(None, key, value, "use a number between 0 and 1")
    return float(value)


def _types(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Collection) or not value:
        raise SpecError(None, "types", value, f"use a non-empty list of: {', '.join(DISCOVERY_TYPES)}")
    for item in value:
        if item not in DISCOVERY_TYPES:
            raise SpecError(None, "types", item, f"use one of: {', '.join(DISCOVERY_TYPES)}")
    return frozenset(value)


def refuse_future(discovery: Discovery, now: datetime, max_ahead_s: float = MAX_AHEAD_S) -> Discovery:
    """``discovery`` unless its ``occurred_at`` is more than ``max_ahead_s`` after ``now`` (``SpecError``).

    A time in the past is a claim nobody can check and is kept as given;
    ``seq``, not ``occurred_at``, orders discoveries.
    """
    ahead_s = (discovery.occurred_at - now).total_seconds()
    if ahead_s > max_ahead_s:
        raise SpecError(None, "occurred_at", discovery.occurred_at.isoformat(),
                        f"use a time at most {max_ahead_s:g} s ahead of this node's clock "
                        f"(it is {ahead_s:.0f} s ahead), or omit it to mean now")
    return discovery


def discovery_subject(agent_id: str, discovery_type: str) -> str:
    """The NATS subject a discovery is published on."""
    return render("discoveries", agent_id=agent_id, discovery_type=discovery_type)


@dataclass(frozen=True, slots=True)
class Discovery:
    """One shared finding. Every field is validated on construction (``SpecError``)."""

    agent_id: str
    agent_role: str
    discovery_type: str
    content: str
    confidence: float
    related_to: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seq: int | None = None
    source: str = UNKNOWN_SOURCE

    def __post_init__(self) -> None:
        check_id(self.agent_id, "agent_id")
        _text("agent_role", self.agent_role, ROLE_MAX_CHARS)
        if self.discovery_type not in DISCOVERY_TYPES:
            raise SpecError(None, "discovery_type", self.discovery_type, f"use one of: {', '.join(DISCOVERY_TYPES)}")
        _text("content", self.content, CONTENT_MAX_CHARS)
        object.__setattr__(self, "confidence", _confidence("confidence", self.confidence))
        if self.related_to is not None:
            check_id(self.related_to, "related_to")
        check_id(self.id, "id")
        if not isinstance(self.occurred_at, datetime) or self.occurred_at.tzinfo is None:
            raise SpecError(None, "occurred_at", self.occurred_at, "use an aware datetime")
        if self.seq is not None and (isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1):
            raise SpecError(None, "seq", self.seq, "use an integer >= 1, or None before it is stored")
        if not isinstance(self.source, str) or not _SOURCE.fullmatch(self.source):
            raise SpecError(None, "source", self.source, "use 'node:<node_id>', 'nats:<node_id>' or 'unknown'")

    @property
    def subject(self) -> str:
        """``discoveries.{agent_id}.{discovery_type}``."""
        return discovery_subject(self.agent_id, self.discovery_type)

    def with_seq(self, seq: int) -> Discovery:
        """The same discovery, as stored under ``seq``."""
        return replace(self, seq=seq)

    def with_source(self, source: str) -> Discovery:
        """The same discovery, vouched for by ``source``."""
        return replace(self, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible wire form (time as ISO 8601)."""
        return {
            "id": self.id,
            "seq": self.seq,
            "agent_id": self.agent_id,
            "agent_role": self.agent_role,
            "discovery_type": self.discovery_type,
            "content": self.content,
            "confidence": self.confidence,
            "related_to": self.related_to,
            "occurred_at": self.occurred_at.isoformat(),
            "source": self.source,
        }

    def to_wire(self) -> dict[str, Any]:
        """``to_dict`` without ``source``: what goes on NATS. A receiver sets the source itself,
        and a node of an older release refuses keys it does not know."""
        wire = self.to_dict()
        del wire["source"]
        return wire

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Discovery:
        """Validate and build; ``id``, ``seq``, ``related_to``, ``occurred_at`` and ``source`` are optional.

        Unknown keys are refused (``SpecError`` naming the key), so a typo
        never passes silently.
        """
        if not isinstance(raw, Mapping):
            raise SpecError(None, "discovery", raw, "use a JSON object")
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            raise SpecError(None, unknown[0], raw[unknown[0]], f"use only the keys: {', '.join(_FIELDS)}")
        missing = [k for k in ("agent_id", "agent_role", "discovery_type", "content", "confidence") if k not in raw]
        if missing:
            raise SpecError(None, missing[0], None, "this key is required")
        extra: dict[str, Any] = {}
        if raw.get("id") is not None:
            extra["id"] = raw["id"]
        if raw.get("seq") is not None:
            extra["seq"] = raw["seq"]
        if raw.get("source") is not None:
            extra["source"] = raw["source"]
        when = raw.get("occurred_at")
        if when is not None:
            try:
                extra["occurred_at"] = datetime.fromisoformat(when) if isinstance(when, str) else when
            except ValueError:
                raise SpecError(None, "occurred_at", when, "use an ISO 8601 time with a UTC offset") from None
        return cls(
            agent_id=raw["agent_id"],
            agent_role=raw["agent_role"],
            discovery_type=raw["discovery_type"],
            content=raw["content"],
            confidence=raw["confidence"],
            related_to=raw.get("related_to"),
            **extra,
        )


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """Which discoveries a reader wants.

    - ``agent_id``: only this agent's discoveries; with ``exclude_self``, the
      reverse: ``agent_id`` names the reader, and everyone else's discoveries
      are delivered except its own.
    - ``types``: only these discovery types.
    - ``min_confidence``: only discoveries at least this confident.
    """

    agent_id: str | None = None
    types: frozenset[str] | None = None
    min_confidence: float = 0.0
    exclude_self: bool = False

    def __post_init__(self) -> None:
        if self.agent_id is not None:
            check_id(self.agent_id, "agent_id")
        object.__setattr__(self, "types", _types(self.types))
        object.__setattr__(self, "min_confidence", _confidence("min_confidence", self.min_confidence))
        if not isinstance(self.exclude_self, bool):
            raise SpecError(None, "exclude_self", self.exclude_self, "use true or false")
        if self.exclude_self and self.agent_id is None:
            raise SpecError(None, "exclude_self", True, "name the reader with agent_id too")

    def matches(self, discovery: Discovery) -> bool:
        if self.agent_id is not None and (discovery.agent_id == self.agent_id) == self.exclude_self:
            return False
        if self.types is not None and discovery.discovery_type not in self.types:
            return False
        return discovery.confidence >= self.min_confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "types": sorted(self.types) if self.types is not None else None,
            "min_confidence": self.min_confidence,
            "exclude_self": self.exclude_self,
        }
