"""Status out: supervision events and heartbeats on ``agents.{id}.status.{type}``.

Every supervision event of an agent is published on
``agents.{agent_id}.status.{event_type}`` as an envelope whose ``type`` is the
event type and whose ``payload`` is ``SupervisionEvent.to_dict()``; events of a
supervisor (no agent id) go to ``system.events.{node_id}.{event_type}``. The
bridge publishes them in ``seq`` order on one connection, so every subscriber
sees one agent's events in the order they happened.

A heartbeat (``type`` ``heartbeat``) carries the agent's state, mailbox depth
and restart count, every ``heartbeat_interval_s``. Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mistersmith.envelope import Envelope
from mistersmith.supervisors import SupervisionEvent

from . import subjects
from .counters import BridgeCounters
from .wire import Wire

__all__ = ["HEARTBEAT", "StatusPublisher", "event_message", "heartbeat_message"]

logger = logging.getLogger("mistersmith.bridge.status")

HEARTBEAT = "heartbeat"
_HEARTBEAT_KEYS = ("id", "kind", "state", "mailbox_depth", "restart_count", "paused", "supervisor")


def event_message(event: SupervisionEvent, node_id: str) -> tuple[str, bytes] | None:
    """The subject and envelope bytes of one event; ``None`` if its ids cannot be subject tokens."""
    if event.agent_id is not None:
        if not subjects.is_token(event.agent_id):
            return None
        subject = subjects.status(event.agent_id, event.event_type)
    else:
        subject = subjects.supervisor_events(node_id, event.event_type)
    envelope = Envelope(
        type=event.event_type, payload=event.to_dict(), id=str(event.event_id), ts=event.occurred_at,
        source=node_id, target=event.agent_id,
    )
    return subject, envelope.encode()


def heartbeat_message(info: Mapping[str, Any], node_id: str) -> tuple[str, bytes] | None:
    """The subject and envelope bytes of one agent's heartbeat (from ``Runtime.list_agents()``)."""
    agent_id = info.get("id")
    if not subjects.is_token(agent_id):
        return None
    assert isinstance(agent_id, str)
    payload = {key: info.get(key) for key in _HEARTBEAT_KEYS}
    payload["node_id"] = node_id
    envelope = Envelope(type=HEARTBEAT, payload=payload, source=node_id, target=agent_id)
    return subjects.status(agent_id, HEARTBEAT), envelope.encode()


class StatusPublisher:
    """Publishes events (in the order given) and heartbeats."""

    def __init__(self, wire: Wire, counters: BridgeCounters, node_id: str) -> None:
        self.wire = wire
        self.counters = counters
        self.node_id = node_id

    async def publish_event(self, event: SupervisionEvent) -> None:
        try:
            message = event_message(event, self.node_id)
        except TypeError as exc:  # data that is not JSON: count it, never stop the pump
            self.counters.add("publish_failed")
            logger.error("event %s of %s is not JSON-serialisable: %s", event.event_type, event.agent_id, exc)
            return
        if message is None:
            return
        if await self.wire.publish(*message):
            self.counters.add("events_published")

    async def heartbeat(self, agents: list[dict[str, Any]]) -> None:
        for info in agents:
            message = heartbeat_message(info, self.node_id)
            if message is not None and await self.wire.publish(*message):
                self.counters.add("heartbeats_published")
