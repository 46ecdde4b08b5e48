"""A ``ClusterOps`` of the tests' own: fixed rows, and a record of every call (for the doors' tests)."""

from __future__ import annotations

import threading
from typing import Any

from mistersmith.errors import MisterSmithError


def node_row(node_id: str, *, state: str = "up", agents: int = 0, expired: bool = False,
             http_url: str | None = "http://127.0.0.1:8080") -> dict[str, Any]:
    """A membership row shaped as ``NodeLease.nodes()`` returns it."""
    return {"node_id": node_id, "run_id": f"run-{node_id}", "host": "test-host", "pid": 4242, "version": "0.1.0",
            "started_at": "2026-11-24T09:00:00+00:00", "last_seen": "2026-11-24T09:44:50.500+00:00",
            "lease_until": "2026-11-24T09:44:55.500+00:00", "http_url": http_url,
            "nats_url": "nats://127.0.0.1:4222", "state": state, "agents": agents, "max_agents": 10000,
            "down_at": None, "expired": expired}


class FakeCluster:
    """``ClusterOps`` for one node: ``nodes()`` returns ``rows``; ``drain``/``rebalance`` answer as the
    port's docstrings say and count their calls. ``error``: raised by every call instead."""

    def __init__(self, node_id: str, rows: list[dict[str, Any]] | None = None, *,
                 error: MisterSmithError | None = None) -> None:
        self.node_id = node_id
        self.rows = rows if rows is not None else [node_row(node_id)]
        self.error = error
        self.drains: list[bool] = []  # the exit of each drain
        self.rebalances = 0
        self.called = threading.Event()

    def _maybe_fail(self) -> None:
        self.called.set()
        if self.error is not None:
            raise self.error

    async def nodes(self) -> list[dict[str, Any]]:
        self._maybe_fail()
        return [dict(r) for r in self.rows]

    async def drain(self, *, exit: bool) -> dict[str, Any]:
        self._maybe_fail()
        self.drains.append(exit)
        return {"node": self.node_id, "handed_over": ["a1", "a2"], "not_handed_over": [], "exiting": exit}

    async def rebalance(self) -> dict[str, Any]:
        self._maybe_fail()
        self.rebalances += 1
        return {"node": self.node_id, "moved": ["a3"], "target": 2}
