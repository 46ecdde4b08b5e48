"""Ports: what one edge needs from another, as ``typing.Protocol``s.

The edges (``bridge``, ``journal``, ``web``) never import one another. The
web shim asks for history, discoveries, tasks, health and NATS counters
through these protocols; the node wires in whatever implements them (the
journal's replay, the bridge's tasks...). Each one is optional for the web:
a missing port answers "not available on this node".

Every coroutine here runs on the node's event loop and must not block it.
Failures are ``MisterSmithError``s (their ``code`` goes on the wire).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from mistersmith.discovery import Discovery, DiscoveryFilter

__all__ = [
    "AuditTrail",
    "ClusterOps",
    "ComponentCheck",
    "Discoveries",
    "DiscoveryStore",
    "DiscoverySubscription",
    "History",
    "NatsStats",
    "Publish",
    "RemoteCommands",
    "TaskStore",
    "Tasks",
    "Timeline",
]


@runtime_checkable
class History(Protocol):
    """Supervision events read back (the journal's replay)."""

    async def replay_events(
        self,
        *,
        agent_id: str | None,
        since: int | datetime | None,
        event_types: Sequence[str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` events, oldest first, each ``SupervisionEvent.to_dict()``.

        ``since`` is inclusive: a journal ``seq`` or an aware ``datetime``.
        """
        ...


@runtime_checkable
class Timeline(Protocol):
    """Supervision events in ``seq`` order, followed live and folded into trees (the console's view).

    On a node: the journal (every node's events; ``seq`` is the journal's).
    Without one, the web falls back to the Runtime's memory (``mistersmith.timelines``).
    Events are ``SupervisionEvent.to_dict()`` (plus ``trace_id`` once events carry it).
    """

    source: str
    """``journal`` or ``memory``."""

    async def head_seq(self) -> int:
        """The last ``seq`` (0: none yet)."""
        ...

    def follow(self, *, after_seq: int) -> AsyncGenerator[dict[str, Any], None]:
        """Every event with ``seq > after_seq``, then live ones as they come, in order; ``aclose()`` ends it."""
        ...

    async def events(
        self, *, after_seq: int = 0, agent_id: str | None = None, event_types: Sequence[str] | None = None,
        node_id: str | None = None, since: datetime | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` stored events with ``seq > after_seq`` (and ``occurred_at >= since``), oldest first."""
        ...

    async def tree_at(self, at: int | None) -> dict[str, Any]:
        """``{"as_of_seq", "as_of", "source", "nodes": [{"node_id", "tree"}]}``: every node's tree as of
        ``seq`` ``at`` (``None``: the last event), rebuilt from the events alone."""
        ...


@runtime_checkable
class AuditTrail(Protocol):
    """The audit trail read back (the journal's ``audit_log``)."""

    async def audit_entries(
        self, *, since: datetime | None, actor: str | None, action: str | None, door: str | None, limit: int,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` entries, oldest first: ``{"seq", "audit_id", "at", "node_id", "actor", "door",
        "action", "target", "outcome", "detail", "trace_id"}`` (``at`` ISO 8601)."""
        ...


@runtime_checkable
class DiscoverySubscription(Protocol):
    """Live discoveries for one reader, in ``seq`` order; ``close()`` ends the iteration."""

    def __aiter__(self) -> AsyncIterator[Discovery]: ...

    async def __anext__(self) -> Discovery:
        """The next discovery. ``StopAsyncIteration`` once closed, by the reader
        or because the reader fell too far behind (``overflowed`` is then true:
        it should resume from its last ``seq``)."""
        ...

    @property
    def overflowed(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Discoveries(Protocol):
    """Sharing, querying and following discoveries."""

    async def share(self, discovery: Discovery) -> Discovery:
        """Store and publish; returns the stored discovery, with its ``seq``."""
        ...

    async def get(self, discovery_id: str) -> Discovery | None: ...

    async def query(self, flt: DiscoveryFilter, *, after_seq: int = 0, limit: int = 100) -> list[Discovery]:
        """Stored discoveries with ``seq > after_seq``, oldest first."""
        ...

    def subscribe(self, flt: DiscoveryFilter, *, after_seq: int | None = None) -> DiscoverySubscription:
        """Follow new discoveries; with ``after_seq``, first every stored one after it, with no gap."""
        ...

    def stats(self) -> dict[str, Any]:
        """``{"total": n, "by_type": {...}, "by_agent": {...}, "subscribers": n}``."""
        ...


class DiscoveryStore(Protocol):
    """Durable discoveries (the journal's ``discoveries`` table), used by the node's hub.

    ``node_id`` (optional attribute): the node it stores for; a hub made without one uses it.
    """

    async def persist(self, discovery: Discovery) -> Discovery:
        """Store it and return it as stored, with its ``seq`` (strictly increasing). Idempotent on
        ``discovery.id``: storing the same id again changes nothing and returns the first row
        (its ``seq``, content and ``source``), whatever the second one said."""
        ...

    async def load(self, flt: DiscoveryFilter, *, after_seq: int, limit: int) -> list[Discovery]:
        """Stored discoveries matching ``flt`` with ``seq > after_seq``, in ``seq`` order."""
        ...

    async def get(self, discovery_id: str) -> Discovery | None: ...

    async def last_seq(self) -> int:
        """The highest ``seq`` stored (0 when there is none)."""
        ...


Publish = Callable[[Discovery], Awaitable[None]]
"""Publish a stored discovery on ``discoveries.{agent_id}.{type}`` (the bridge)."""


@runtime_checkable
class Tasks(Protocol):
    """Work submitted for any capable agent (the bridge's task queue)."""

    async def submit(
        self, *, task_type: str, payload: Mapping[str, Any], agent_id: str | None, timeout_s: float,
        command: str = "run",
    ) -> dict[str, Any]:
        """Queue a task (``command`` of an agent of kind ``task_type``); returns at least
        ``{"task_id": str, "status": str}``. Refused (``SpecError``) for a kind no node serves."""
        ...

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """``{"task_id", "status", "result"?, "error"?}``, or ``None`` if unknown."""
        ...


class TaskStore(Protocol):
    """Durable task state (the journal's ``tasks`` table), the authority on what became of a task.

    Only nodes write it: the submitting node (``queued``) and the worker that
    holds the task (everything after). The bridge's task tracker reads it; it
    never records what a NATS message says.
    """

    async def record(self, task_id: str, fields: Mapping[str, Any]) -> None:
        """Upsert one transition that no claim covers (``queued``; ``retrying`` or ``dead`` before
        a worker took the task). ``fields``: ``status`` (``queued``, ``running``, ``retrying``,
        ``done``, ``dead``) and any of ``kind``/``task_type``, ``priority``, ``payload``,
        ``attempt``, ``agent_id``, ``node``, ``result``, ``error``.
        A state never goes back (a late ``queued`` after ``running``); a ``done`` or ``dead``
        task never changes again; fields not given keep their stored value."""
        ...

    async def claim(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool:
        """A worker took the task: ``running`` under ``claim`` (a random token, never published),
        with ``kind``, ``agent_id``, ``node`` and ``attempt`` from ``fields``; it replaces any
        earlier claim (a redelivery). False, and nothing changes, if the task is ``done`` or ``dead``."""
        ...

    async def settle(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool:
        """The outcome of the attempt that holds ``claim``: ``status`` ``done`` (with ``result``),
        ``retrying`` or ``dead`` (with ``error``). False, and nothing changes, unless ``claim`` is
        still the task's claim and the task is neither ``done`` nor ``dead``."""
        ...

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """``{"task_id", "status", "kind", "priority", "attempts", "result"?, "error"?, ...}``, or ``None``."""
        ...


ComponentCheck = Callable[[], Awaitable[Mapping[str, Any]]]
"""A health probe: returns at least ``{"status": "ok" | "degraded" | "down"}``.

Raising counts as ``down``. The web bounds each call with a timeout.
"""


@runtime_checkable
class RemoteCommands(Protocol):
    """Commands to agents this node does not host, over NATS (the bridge's ``RemoteAgents``)."""

    async def remote_ask(self, agent_id: str, command: str, payload: Mapping[str, Any] | None, *, timeout_s: float,
                         correlation_id: str | None = None,
                         progress: Callable[[Any, float | None, float | None], None] | None = None) -> Any:
        """The result from the node that hosts ``agent_id``; raises its error (``RemoteError``), ``unknown_agent``
        when no node does. ``progress`` (if given) gets each progress item's data, done and total."""
        ...

    async def remote_cancel(self, agent_id: str, correlation_id: str) -> bool:
        """Cancel a command sent with ``correlation_id`` on the node that hosts ``agent_id``."""
        ...

    async def remote_trees(self) -> dict[str, Any]:
        """Every node's supervision tree that answers in time, by node id (``system.control.tree``)."""
        ...


class NatsStats(Protocol):
    """The NATS connection's real counters (the bridge)."""

    async def nats_stats(self) -> dict[str, Any]:
        """``{"connected", "server", "msgs_in", "msgs_out", "bytes_in", "bytes_out",
        "reconnects", "errors", "rtt_ms"}``."""
        ...


@runtime_checkable
class ClusterOps(Protocol):
    """This node's view of, and part in, the cluster (``mistersmith.cluster`` on a node). Each
    coroutine runs the blocking work in a helper thread."""

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node's membership row: ``{"node_id", "state" (up, draining, down), "agents",
        "max_agents", "last_seen", "lease_until", "expired", "http_url", "nats_url", "host", "pid",
        "version", "started_at", "run_id"}``, ordered by node id."""
        ...

    async def drain(self, *, exit: bool) -> dict[str, Any]:
        """Stop taking placements and hand every agent to other nodes; returns
        ``{"node", "handed_over": [ids], "not_handed_over": [{"id", "reason"}], "exiting": bool}``
        once each handed agent runs elsewhere (``exit``: then stop the node)."""
        ...

    async def rebalance(self) -> dict[str, Any]:
        """Move agents from this node until no node holds more than ceil(mean) + 1; returns
        ``{"node", "moved": [ids], "target": int}``."""
        ...
