"""Ingesting knowledge discoveries that any NATS client publishes on ``discoveries.*.*``.

Each message is decoded (JSON, the ``Discovery.to_dict`` wire form, or an
envelope whose ``payload`` is that form), validated (``Discovery.from_dict``,
and the subject must be ``discoveries.{agent_id}.{discovery_type}`` of the
body) and handed to the injected ``ingest`` callable (the node's
``DiscoveryHub.ingest``, which stores it and fans it out, and drops this
node's own discoveries echoed back by id).

NATS does not tell a subscriber who published a message, so nothing in one
is taken as proof of its origin: a ``seq`` or ``source`` in the body is
dropped, and the hub records the discovery as ``nats:<this node>``, or
delivers the stored row when a node stored that id first (a node's own
discoveries keep their ``node:`` source). Bad input is logged and counted
(``discoveries_invalid``, also for a discovery the hub refuses with a
``SpecError``: a time too far ahead), a failing ``ingest`` too (``discoveries_failed``);
neither ever reaches nats-py. Messages are ingested one at a time, in arrival
order. Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.discovery import Discovery
from mistersmith.envelope import EnvelopeError, decode_json
from mistersmith.errors import MisterSmithError, SpecError

from . import subjects
from .counters import BridgeCounters
from .lifecycle import unsubscribe_quietly
from .wire import Wire

__all__ = ["DISCOVERY_SUBJECTS", "DiscoveryIngest", "Ingest", "parse_discovery"]

logger = logging.getLogger("mistersmith.bridge.ingest")

DISCOVERY_SUBJECTS = subjects.wildcard("discoveries")

Ingest = Callable[[Discovery], Awaitable[object]]
"""Store and fan out one discovery published on NATS (``DiscoveryHub.ingest``)."""


def parse_discovery(subject: str, data: bytes) -> Discovery:
    """The discovery in a message on ``subject``; ``MisterSmithError`` (a ``SpecError`` or an
    ``EnvelopeError``) saying what is wrong otherwise. Pure."""
    raw: Any = decode_json(data)
    if isinstance(raw, dict) and "payload" in raw and "content" not in raw:
        raw = raw["payload"]  # an envelope around the discovery
    if isinstance(raw, dict):
        # The sender's seq is not ours, and nobody may say who vouches for it: the hub sets the source.
        raw = {k: v for k, v in raw.items() if k not in ("seq", "source")}
    discovery = Discovery.from_dict(raw)
    if subject != discovery.subject:
        raise EnvelopeError("subject", f"{subject!r} should be {discovery.subject!r} for this discovery",
                            code="invalid_payload")
    return discovery


class DiscoveryIngest:
    """The ``discoveries.*.*`` subscription."""

    def __init__(self, wire: Wire, counters: BridgeCounters, ingest: Ingest, *, pending_msgs_limit: int) -> None:
        self.wire = wire
        self.counters = counters
        self._ingest = ingest
        self._pending = pending_msgs_limit
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.wire.nc.subscribe(DISCOVERY_SUBJECTS, cb=self._on_message,
                                                 pending_msgs_limit=self._pending)

    async def close(self) -> None:
        await unsubscribe_quietly([self._sub], "discovery ingest")
        self._sub = None

    async def _on_message(self, msg: Msg) -> None:
        self.counters.add("discoveries_in")
        try:
            discovery = parse_discovery(msg.subject, msg.data)
        except (MisterSmithError, TypeError, ValueError) as exc:
            self.counters.add("discoveries_invalid")
            logger.warning("invalid discovery on %s: %s", msg.subject, exc)
            return
        try:
            await self._ingest(discovery)
        except SpecError as exc:  # the hub refused it (a time too far ahead)
            self.counters.add("discoveries_invalid")
            logger.warning("refused discovery %s on %s: %s", discovery.id, msg.subject, exc)
        except Exception:
            self.counters.add("discoveries_failed")
            logger.exception("ingesting discovery %s from %s failed", discovery.id, msg.subject,
                             extra={"agent_id": discovery.agent_id})
