"""``Timeline``s (``mistersmith.ports``): supervision events in order, followed live, folded into trees.

- ``JournalTimeline``: over a node's journal (every node's events, the
  journal's ``seq``); the node wires it into the web's ``Backends``.
- ``MemoryTimeline``: over a Runtime's in-memory events (the newest
  ``events_kept``, this node's own ``seq``), for an app built without a
  journal.

Both fold with the one projection (``mistersmith.history``) that ``tree_at``
and recovery use. Every coroutine runs on the node's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from mistersmith.history import Projection, TreeSnapshot
from mistersmith.runtime import Runtime
from mistersmith.supervisors import SupervisionEvent

__all__ = ["JournalTimeline", "MemoryTimeline", "snapshot_dict"]


class _Replay(Protocol):
    def __aiter__(self) -> Any: ...

    async def aclose(self) -> None: ...


class _Journal(Protocol):
    """What a ``JournalTimeline`` reads (``mistersmith.journal.Journal``)."""

    def replay(self, agent_id: str | None = None, supervisor: str | None = None, since: Any = None,
               until: Any = None, event_types: Collection[str] | None = None, follow: bool = False, *,
               node_id: str | None = None, itersize: int = 2000, poll_s: float = 1.0) -> Any: ...

    async def atree_at(self, at: Any = None, *, node_id: str | None = None) -> TreeSnapshot: ...

    async def ahead_seq(self) -> int: ...


def snapshot_dict(snap: TreeSnapshot, source: str) -> dict[str, Any]:
    """A ``TreeSnapshot`` as the ``Timeline.tree_at`` answer."""
    return {"as_of_seq": snap.as_of_seq, "as_of": snap.as_of.isoformat() if snap.as_of else None,
            "source": source, "nodes": [{"node_id": n, "tree": snap.tree(n)} for n in snap.nodes()]}


class JournalTimeline:
    """The journal as a ``Timeline``."""

    source = "journal"

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal

    async def head_seq(self) -> int:
        return await self._journal.ahead_seq()

    async def follow(self, *, after_seq: int) -> AsyncGenerator[dict[str, Any], None]:
        replay = self._journal.replay(since=after_seq + 1, follow=True, poll_s=1.0)
        try:
            async for event in replay:
                yield event.to_dict()
        finally:
            await replay.aclose()  # gives the pooled connection back clean

    async def events(
        self, *, after_seq: int = 0, agent_id: str | None = None, event_types: Sequence[str] | None = None,
        node_id: str | None = None, since: datetime | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        replay = self._journal.replay(agent_id=agent_id, since=after_seq + 1, event_types=event_types,
                                      node_id=node_id, itersize=min(max(limit, 1), 2000))
        try:
            async for event in replay:
                if since is not None and event.occurred_at < since:
                    continue
                out.append(event.to_dict())
                if len(out) >= limit:
                    break
        finally:
            await replay.aclose()
        return out

    async def tree_at(self, at: int | None) -> dict[str, Any]:
        return snapshot_dict(await self._journal.atree_at(at), self.source)


class MemoryTimeline:
    """A Runtime's kept events as a ``Timeline`` (what it no longer keeps is not there)."""

    source = "memory"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def head_seq(self) -> int:
        return int(self._runtime.bus.delivered_seq)

    async def follow(self, *, after_seq: int) -> AsyncGenerator[dict[str, Any], None]:
        stream = self._runtime.event_stream(include_history=True)
        try:
            async for event in stream:
                if event.seq > after_seq:
                    yield event.to_dict()
        finally:
            stream.close()

    def _kept(self, after_seq: int, agent_id: str | None, event_types: Sequence[str] | None,
              node_id: str | None, since: datetime | None) -> list[SupervisionEvent]:
        if node_id not in (None, self._runtime.node_id):
            return []
        return [e for e in self._runtime.history(agent_id=agent_id, event_types=event_types)
                if e.seq > after_seq and (since is None or e.occurred_at >= since)]

    async def events(
        self, *, after_seq: int = 0, agent_id: str | None = None, event_types: Sequence[str] | None = None,
        node_id: str | None = None, since: datetime | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self._kept(after_seq, agent_id, event_types, node_id, since)[:limit]]

    async def tree_at(self, at: int | None) -> dict[str, Any]:
        projection = Projection()
        for event in self._runtime.history():
            if at is not None and event.seq > at:
                break
            projection.apply(event)
        return snapshot_dict(projection.snapshot(), self.source)
