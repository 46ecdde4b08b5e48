"""Service discovery: ``agents.discovery.announce`` and ``agents.discovery.query``.

- An announcement (envelope ``type`` ``announce``, payload ``{"id", "kind",
  "node", "commands", "state"}``) is published whenever an agent starts or
  restarts, and for every hosted agent every ``announce_interval_s``.
- ``agents.discovery.query`` (request/reply, one node answers through the
  queue group) finds agents on every known node by ``kind``, ``command`` or
  ``node``: ``{"agents": [announcement payloads], "nodes", "missing"}``.

A kind's commands are learnt once per kind from an agent's built-in ``status``
command and cached. Knowledge discoveries (``mistersmith.discovery``) are
published on ``discoveries.{agent_id}.{type}`` by ``publish_discovery``.
Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.discovery import Discovery
from mistersmith.envelope import Envelope, decode_command, encode_error, encode_json, encode_ok
from mistersmith.errors import MisterSmithError
from mistersmith.runtime import Runtime

from . import subjects
from .counters import BridgeCounters
from .lifecycle import cancel_and_wait
from .trace import trace_headers
from .wire import Wire

__all__ = ["ANNOUNCE_TYPE", "ServiceDiscovery"]

_CLOSE_S = 5.0

logger = logging.getLogger("mistersmith.bridge.discovery")

ANNOUNCE_TYPE = "announce"
_STATUS_TIMEOUT_S = 2.0

Gather = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
Filters = Callable[[Mapping[str, Any]], dict[str, str]]


class ServiceDiscovery:
    """Announces this node's agents and answers queries for all of them."""

    def __init__(self, runtime: Runtime, wire: Wire, counters: BridgeCounters, *,
                 gather: Gather, filters: Filters) -> None:
        self.runtime = runtime
        self.node_id = runtime.node_id
        self.wire = wire
        self.counters = counters
        self._gather = gather
        self._filters = filters
        self._commands: dict[str, list[str]] = {}
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = await self.wire.nc.subscribe(subjects.QUERY, queue=subjects.SPAWN_QUEUE, cb=self._on_query)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:
                logger.debug("discovery unsubscribe: %r", exc)
            self._sub = None
        await cancel_and_wait(list(self._tasks), _CLOSE_S)

    # -- what an agent offers --------------------------------------------------------

    async def commands_of(self, kind: str, agent_id: str, *, learn: bool = True) -> list[str] | None:
        """The commands of ``kind``: cached, else (with ``learn``) asked of ``agent_id``; None if unknown."""
        known = self._commands.get(kind)
        if known is not None or not learn:
            return known
        try:
            status = await self.runtime.aask(agent_id, "status", timeout=_STATUS_TIMEOUT_S)
        except MisterSmithError as exc:
            logger.debug("could not learn the commands of %s from %s: %s", kind, agent_id, exc)
            return None
        commands = status.get("commands") if isinstance(status, dict) else None
        if isinstance(commands, list):
            self._commands[kind] = sorted(str(c) for c in commands)
            return self._commands[kind]
        return None

    async def describe(self, info: Mapping[str, Any], *, learn: bool = True) -> dict[str, Any]:
        """An announcement payload from a ``Runtime.list_agents()``/``get_agent()`` entry.

        With ``learn=False`` it never waits on the agent (commands from the cache only).
        """
        agent_id, kind = str(info.get("id")), str(info.get("kind"))
        return {
            "id": agent_id,
            "kind": kind,
            "node": self.node_id,
            "node_id": self.node_id,
            "commands": await self.commands_of(kind, agent_id, learn=learn),
            "state": info.get("state"),
            "supervisor": info.get("supervisor"),
        }

    async def local_agents(self) -> list[dict[str, Any]]:
        """Every agent hosted here, described (what ``system.nodes.list`` answers); never waits on an agent."""
        return [await self.describe(info, learn=False) for info in self.runtime.list_agents()]

    # -- announcements -----------------------------------------------------------------

    async def announce(self, agent_id: str) -> None:
        try:
            info = self.runtime.get_agent(agent_id)
        except MisterSmithError:
            return  # gone already
        await self._announce(await self.describe(info))

    async def announce_all(self) -> None:
        for info in self.runtime.list_agents():
            await self._announce(await self.describe(info))

    async def _announce(self, description: dict[str, Any]) -> None:
        if not subjects.is_token(description["id"]):
            return
        envelope = Envelope(type=ANNOUNCE_TYPE, payload=description, source=self.node_id)
        if await self.wire.publish(subjects.ANNOUNCE, envelope.encode()):
            self.counters.add("announces_published")

    # -- queries -----------------------------------------------------------------------

    async def _on_query(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._query(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _query(self, msg: Msg) -> None:
        try:
            payload, _ = decode_command(msg.data)
            reply = encode_ok(await self._gather(self._filters(payload)))
        except MisterSmithError as exc:
            reply = encode_error(str(exc.code), exc.message)
        if msg.reply:
            await self.wire.reply(msg, reply, trace_headers(msg.headers))
        else:
            logger.warning("discovery query without a reply subject")

    # -- knowledge ----------------------------------------------------------------------

    async def publish_discovery(self, discovery: Discovery) -> None:
        """Publish a (stored) discovery on ``discoveries.{agent_id}.{type}``, without its ``source``
        (receivers set it themselves; ``Discovery.to_wire``)."""
        await self.wire.publish(discovery.subject, encode_json(discovery.to_wire()))
