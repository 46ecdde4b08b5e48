"""The service directory: which agents run where, on ``agents.discovery.announce`` and
``agents.discovery.query`` (the subjects keep their names: they are a public contract).

- An announcement (envelope ``type`` ``announce``, payload ``{"id", "kind",
  "node", "commands", "state"}``) is published whenever an agent starts or
  restarts, and for every hosted agent every ``announce_interval_s``.
- ``agents.discovery.query`` (request/reply, one node answers through the
  queue group) finds agents on every known node by ``kind``, ``command`` or
  ``node``: ``{"agents": [announcement payloads], "nodes", "missing"}``.

A kind's commands come from ``Runtime.kinds()``, which reads no agent, so a
busy agent is described (and found by ``command``) like an idle one. Shared
knowledge (``mistersmith.discovery``, ``discoveries.{agent_id}.{discovery_type}``)
is not the directory's business: see ``ingest`` and ``Bridge.publish_discovery``.
Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.envelope import Envelope, Reply, decode_command
from mistersmith.errors import MisterSmithError
from mistersmith.runtime import Runtime

from . import subjects
from .counters import BridgeCounters
from .lifecycle import TaskSet, unsubscribe_quietly
from .trace import trace_headers
from .wire import Wire

__all__ = ["ANNOUNCE_TYPE", "ServiceDirectory"]

_CLOSE_S = 5.0

logger = logging.getLogger("mistersmith.bridge.services")

ANNOUNCE_TYPE = "announce"

Gather = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
Filters = Callable[[Mapping[str, Any]], dict[str, str]]


class ServiceDirectory:
    """Announces this node's agents and answers queries for all of them."""

    def __init__(self, runtime: Runtime, wire: Wire, counters: BridgeCounters, *,
                 gather: Gather, filters: Filters) -> None:
        self.runtime = runtime
        self.node_id = runtime.node_id
        self.wire = wire
        self.counters = counters
        self._gather = gather
        self._filters = filters
        self._sub: Subscription | None = None
        self._tasks = TaskSet()

    async def start(self) -> None:
        self._sub = await self.wire.nc.subscribe(subjects.QUERY, queue=subjects.SPAWN_QUEUE, cb=self._on_query)

    async def close(self) -> None:
        await unsubscribe_quietly([self._sub], "service directory")
        self._sub = None
        await self._tasks.close(_CLOSE_S)

    # -- what an agent offers --------------------------------------------------------

    def commands(self) -> dict[str, list[str]]:
        """Every registered kind's commands, sorted (``Runtime.kinds()``: no agent is asked)."""
        return {kind: sorted(info["commands"]) for kind, info in self.runtime.kinds().items()}

    def describe(self, info: Mapping[str, Any], commands: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        """An announcement payload from a ``Runtime.list_agents()``/``get_agent()`` entry; ``commands``:
        what ``commands()`` returned (else it is read now). A kind that was never registered (an
        agent spawned from a class) has ``commands`` null."""
        kind = str(info.get("kind"))
        known = self.commands() if commands is None else commands
        return {
            "id": str(info.get("id")),
            "kind": kind,
            "node": self.node_id,
            "node_id": self.node_id,
            "commands": known.get(kind),
            "state": info.get("state"),
            "supervisor": info.get("supervisor"),
        }

    async def local_agents(self) -> list[dict[str, Any]]:
        """Every agent hosted here, described (what ``system.nodes.list`` answers); never waits on an agent."""
        commands = self.commands()
        return [self.describe(info, commands) for info in self.runtime.list_agents()]

    # -- announcements -----------------------------------------------------------------

    async def announce(self, agent_id: str) -> None:
        try:
            info = self.runtime.get_agent(agent_id)
        except MisterSmithError:
            return  # gone already
        await self._announce(self.describe(info))

    async def announce_all(self) -> None:
        for description in await self.local_agents():
            await self._announce(description)

    async def _announce(self, description: dict[str, Any]) -> None:
        if not subjects.is_token(description["id"]):
            return
        envelope = Envelope(type=ANNOUNCE_TYPE, payload=description, source=self.node_id)
        if await self.wire.publish(subjects.ANNOUNCE, envelope.encode()):
            self.counters.add("announces_published")

    # -- queries -----------------------------------------------------------------------

    async def _on_query(self, msg: Msg) -> None:
        self._tasks.spawn(self._query(msg))

    async def _query(self, msg: Msg) -> None:
        try:
            payload, _ = decode_command(msg.data)
            reply = Reply.success(await self._gather(self._filters(payload)))
        except MisterSmithError as exc:
            reply = Reply.from_exception(exc)
        if msg.reply:
            await self.wire.reply(msg, reply, trace_headers(msg.headers))
        else:
            logger.warning("service directory query without a reply subject")
