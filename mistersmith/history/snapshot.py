"""``TreeSnapshot``: the supervision tree(s) and every child's state at one point of history. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .record import AgentRecord

__all__ = ["TreeSnapshot"]


@dataclass(frozen=True)
class TreeSnapshot:
    """The supervision tree(s) and every child's state as of one journal position."""

    as_of_seq: int
    as_of: datetime | None
    records: tuple[AgentRecord, ...]

    def nodes(self) -> list[str]:
        return sorted({r.node_id for r in self.records})

    def agent(self, agent_id: str, node_id: str | None = None) -> AgentRecord:
        """The (non-supervisor) child ``agent_id``; ``KeyError`` if it was not there."""
        for record in self.records:
            if record.agent_id == agent_id and not record.is_supervisor and node_id in (None, record.node_id):
                return record
        raise KeyError(agent_id)

    def agents(self, node_id: str | None = None) -> list[AgentRecord]:
        """The agents (not supervisors), in start order."""
        return [r for r in self.records if not r.is_supervisor and node_id in (None, r.node_id)]

    def tree(self, node_id: str) -> dict[str, Any]:
        """One node's tree, nested like ``Runtime.tree()``: supervisors with their ``children``."""
        records = [r for r in self.records if r.node_id == node_id]
        by_parent: dict[str, list[AgentRecord]] = {}
        for record in records:
            by_parent.setdefault(record.supervisor, []).append(record)

        def node(record: AgentRecord) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": record.agent_id,
                "path": record.path,
                "type": "supervisor" if record.is_supervisor else "agent",
                "kind": record.kind,
                "state": record.state,
                "restart": record.restart,
                "restart_count": record.incarnation,
            }
            if record.is_supervisor:
                for name in ("strategy", "intensity", "period_s"):
                    if name in record.spec:
                        out[name] = record.spec[name]
                out["children"] = [node(c) for c in by_parent.get(record.path, [])]
            else:
                out["config"] = record.config
            return out

        roots = by_parent.get("", [])
        if not roots:
            return {"node_id": node_id, "id": None, "children": []}
        tree = node(roots[-1])
        tree["node_id"] = node_id
        return tree
