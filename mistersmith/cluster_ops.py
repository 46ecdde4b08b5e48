"""``ClusterDoor``: the ``ClusterOps`` port over a node's ``Cluster``, for the doors (NATS, HTTP/MCP).

``Cluster``'s calls block (PostgreSQL, and a drain waits until each agent it
hands over runs elsewhere), so each one runs in a short-lived helper thread
(``crossing.run_in_thread``: ``mistersmith-cluster-nodes``, ``-drain``,
``-rebalance``) while the event loop goes on. A PostgreSQL error becomes
``ClusterUnavailableError`` (``unavailable``), naming what could not be done;
anything else the cluster raises goes through as it is.

Stopping the node after ``drain(exit=True)`` is not done here: the door that
answered does it once its reply is sent (the bridge, through the node's
shutdown-request callback), so the caller hears how the drain went first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import psycopg

from mistersmith.crossing import run_in_thread
from mistersmith.errors import MisterSmithError

__all__ = ["ClusterDoor", "ClusterUnavailableError"]

T = TypeVar("T")
Record = Callable[[str, str, BaseException | None], None]
"""Records an action on a target, and how it failed (``Runtime.record_action``: the audit trail)."""


class _Cluster(Protocol):
    """What the door needs of ``mistersmith.cluster.Cluster`` (blocking calls)."""

    node_id: str

    def nodes(self) -> list[dict[str, Any]]: ...

    def drain(self, *, exit: bool) -> dict[str, Any]: ...

    def rebalance(self) -> dict[str, Any]: ...


class ClusterUnavailableError(MisterSmithError):
    """The cluster's table could not be read or written now (PostgreSQL); the cause is in ``__cause__``."""

    code = "unavailable"

    def __init__(self, what: str, node_id: str, detail: str) -> None:
        super().__init__(f"{what} on node {node_id!r} failed: PostgreSQL: {detail}; retry once the database is back")
        self.what = what
        self.node_id = node_id


class ClusterDoor:
    """``ClusterOps`` for the node's doors; every coroutine runs on the loop and never blocks it."""

    def __init__(self, cluster: _Cluster, record: Record | None = None) -> None:
        self._cluster = cluster
        self._record = record

    async def _audited(self, action: str, work: Awaitable[T]) -> T:
        """``work``, recorded as ``action`` of this node for whoever acts now (``Runtime.record_action``)."""
        try:
            result = await work
        except BaseException as exc:
            if self._record is not None:
                self._record(action, self._cluster.node_id, exc)
            raise
        if self._record is not None:
            self._record(action, self._cluster.node_id, None)
        return result

    async def _off_loop(self, what: str, name: str, fn: Callable[[], T]) -> T:
        try:
            return await run_in_thread(fn, f"mistersmith-cluster-{name}")
        except psycopg.Error as exc:
            raise ClusterUnavailableError(what, self._cluster.node_id, " ".join(str(exc).split())) from exc

    async def nodes(self) -> list[dict[str, Any]]:
        return await self._off_loop("reading the cluster's nodes", "nodes", self._cluster.nodes)

    async def drain(self, *, exit: bool) -> dict[str, Any]:
        return await self._audited("drain", self._off_loop("draining", "drain",
                                                           lambda: self._cluster.drain(exit=exit)))

    async def rebalance(self) -> dict[str, Any]:
        return await self._audited("rebalance", self._off_loop("rebalancing", "rebalance", self._cluster.rebalance))
