"""Which nodes share this NATS: ``system.nodes.hello``, ``here`` and ``bye``.

A node says ``hello`` when its bridge starts (every node that hears it answers
``here``), ``here`` again every heartbeat, and ``bye`` when it closes. Each
message is ``{"node": <id>, ...facts}``: on a node in a cluster, the facts of
its lease (``state``, ``run_id``, ``agents``, ``max_agents``, ``http_url``,
``nats_url``), the same as its ``nodes`` row; the row, renewed in
PostgreSQL, is what decides whether it is up. A node
not heard from for ``expiry_s`` is forgotten. ``list`` and discovery queries
wait for an answer from every node known here, so the view only decides how
long they wait, never what a node answers. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.envelope import EnvelopeError, decode_json, encode_json

from . import subjects
from .lifecycle import unsubscribe_quietly
from .wire import Wire

__all__ = ["Membership"]

logger = logging.getLogger("mistersmith.bridge.membership")


class Membership:
    """This node's view of the nodes on the bus (itself included)."""

    def __init__(self, wire: Wire, node_id: str, *, expiry_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 facts: Callable[[], dict[str, Any]] = dict) -> None:
        self.wire = wire
        self.node_id = node_id
        self._facts = facts  # what each message says besides the node id (its lease's state, agents...)
        self.expiry_s = expiry_s
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._subs: list[Subscription] = []
        self._changed = asyncio.Event()

    def known(self) -> list[str]:
        """The node ids heard from within ``expiry_s``, this one included, sorted."""
        horizon = self._clock() - self.expiry_s
        return sorted({self.node_id, *(n for n, t in self._seen.items() if t >= horizon)})

    async def wait_for(self, nodes: Collection[str], timeout_s: float) -> bool:
        """Wait until every node in ``nodes`` is known; False after ``timeout_s``."""
        deadline = self._clock() + timeout_s
        while not set(nodes) <= set(self.known()):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def start(self) -> None:
        nc = self.wire.nc
        for what in ("hello", "here", "bye"):
            self._subs.append(await nc.subscribe(subjects.nodes(what), cb=self._on_message))
        await self._say("hello")

    async def beat(self) -> None:
        """Say ``here`` (called every heartbeat)."""
        await self._say("here")

    async def close(self) -> None:
        await self._say("bye")
        await unsubscribe_quietly(self._subs, "membership")
        self._subs.clear()

    async def _say(self, what: str) -> None:
        await self.wire.publish(subjects.nodes(what), encode_json({**self._facts(), "node": self.node_id}))

    async def _on_message(self, msg: Msg) -> None:
        try:
            raw = decode_json(msg.data)
            node = raw.get("node") if isinstance(raw, dict) else None
        except EnvelopeError:
            node = None
        if not subjects.is_token(node):
            logger.warning("malformed node message on %s: %r", msg.subject, msg.data[:200])
            return
        assert isinstance(node, str)
        if node == self.node_id:
            return
        what = subjects.parse_nodes(msg.subject)
        if what == "bye":
            self._seen.pop(node, None)
            logger.info("node %s left", node)
        else:
            if node not in self._seen:
                logger.info("node %s joined", node)
            self._seen[node] = self._clock()
            if what == "hello":
                await self._say("here")
        self._changed.set()
