"""``AgentRecord``: one child slot (agent or supervisor) as the history last saw it. Pure.

A record is keyed by ``(node_id, supervisor path, id)``. The fold that keeps
records (``projection.py``) says what its ``state`` and ``desired_state``
mean; ``TreeSnapshot`` (``snapshot.py``) and recovery planning (``plan.py``)
read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["AgentRecord", "RecordKey"]

RecordKey = tuple[str, str, str]  # (node_id, supervisor path, child id)


@dataclass(slots=True)
class AgentRecord:
    """One child slot (agent or supervisor) as the journal last saw it."""

    node_id: str
    supervisor: str
    agent_id: str
    kind: str
    restart: str
    spec: dict[str, Any]
    desired_state: str
    state: str
    incarnation: int
    reason: str | None
    last_event: str
    last_seq: int
    started_seq: int
    updated_at: datetime

    @property
    def key(self) -> RecordKey:
        return (self.node_id, self.supervisor, self.agent_id)

    @property
    def path(self) -> str:
        return f"{self.supervisor}/{self.agent_id}" if self.supervisor else self.agent_id

    @property
    def is_supervisor(self) -> bool:
        return self.kind == "supervisor"

    @property
    def config(self) -> dict[str, Any]:
        config = self.spec.get("config")
        return dict(config) if isinstance(config, Mapping) else {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible description."""
        return {
            "node_id": self.node_id,
            "supervisor": self.supervisor,
            "id": self.agent_id,
            "path": self.path,
            "kind": self.kind,
            "restart": self.restart,
            "config": self.config,
            "spec": dict(self.spec),
            "desired_state": self.desired_state,
            "state": self.state,
            "restart_count": self.incarnation,
            "reason": self.reason,
            "last_event": self.last_event,
            "last_seq": self.last_seq,
            "started_seq": self.started_seq,
            "updated_at": self.updated_at.isoformat(),
        }
