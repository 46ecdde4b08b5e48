"""``ClusterDoor``: the ClusterOps port over a (blocking) Cluster: each call off the loop, PostgreSQL errors
``unavailable``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from mistersmith.cluster_ops import ClusterDoor, ClusterUnavailableError
from mistersmith.ports import ClusterOps


class BlockingCluster:
    """Blocking calls, as ``Cluster``'s are; each records the thread it ran in."""

    node_id = "n1"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.threads: list[str] = []
        self.exits: list[bool] = []

    def _ran(self) -> None:
        self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error

    def nodes(self) -> list[dict[str, Any]]:
        self._ran()
        return [{"node_id": "n1", "state": "up"}]

    def drain(self, exit: bool = False, timeout_s: float = 60.0) -> dict[str, Any]:
        self._ran()
        self.exits.append(exit)
        return {"node": "n1", "handed_over": [], "not_handed_over": [], "exiting": exit}

    def rebalance(self, timeout_s: float = 60.0) -> dict[str, Any]:
        self._ran()
        return {"node": "n1", "moved": [], "target": 1}


def test_each_call_runs_in_a_helper_thread_and_returns_the_clusters_answer() -> None:
    cluster = BlockingCluster()
    door = ClusterDoor(cluster)
    assert isinstance(door, ClusterOps)

    async def scenario() -> None:
        assert await door.nodes() == [{"node_id": "n1", "state": "up"}]
        assert (await door.drain(exit=True))["exiting"] is True
        assert (await door.rebalance())["target"] == 1

    asyncio.run(scenario())
    assert cluster.threads == ["mistersmith-cluster-nodes", "mistersmith-cluster-drain",
                               "mistersmith-cluster-rebalance"]
    assert cluster.exits == [True]


def test_a_postgresql_error_is_unavailable_with_its_cause() -> None:
    cause = psycopg.OperationalError("connection to server at 127.0.0.1 failed:\n  Connection refused")
    door = ClusterDoor(BlockingCluster(cause))
    with pytest.raises(ClusterUnavailableError) as info:
        asyncio.run(door.nodes())
    assert info.value.code == "unavailable" and info.value.__cause__ is cause
    assert info.value.message == ("reading the cluster's nodes on node 'n1' failed: PostgreSQL: connection to "
                                  "server at 127.0.0.1 failed: Connection refused; retry once the database is back")


def test_other_errors_go_through_as_they_are() -> None:
    door = ClusterDoor(BlockingCluster(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(door.rebalance())
