"""system.control.{nodes,drain,rebalance} and system.node.{id}.{drain,rebalance}: the cluster's doors on NATS,
over a fake ClusterOps on each of two bridge nodes (one real nats-server); the payload checks, pure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from _bridge_helpers import WAIT_S, BridgeNode, client
from _fake_cluster import FakeCluster, node_row
from nats.aio.client import Client as NATS

from mistersmith.bridge.control_payloads import Refused, check_drain, empty_only
from mistersmith.cluster_ops import ClusterUnavailableError
from mistersmith.embedded.nats import EmbeddedNats

ROWS = [node_row("node-a", agents=2), node_row("node-b", agents=3)]


# -- the payload checks (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expected"), [
    ({}, (None, False)),
    ({"node": "n1"}, ("n1", False)),
    ({"node": "n1", "exit": True}, ("n1", True)),
    ({"exit": False}, (None, False)),
    ({"node": None, "exit": None}, (None, False)),
])
def test_check_drain_accepts(payload: dict[str, Any], expected: tuple[str | None, bool]) -> None:
    assert check_drain(payload) == expected


@pytest.mark.parametrize(("payload", "needle"), [
    ({"node": "a.b"}, "drain: node='a.b'"),
    ({"node": 7}, "drain: node=7"),
    ({"exit": "yes"}, "drain: exit='yes'; use true"),
    ({"exit": 1}, "drain: exit=1"),
    ({"node": "n1", "force": True}, "drain: unknown key 'force'"),
])
def test_check_drain_refuses_with_the_key_and_value(payload: dict[str, Any], needle: str) -> None:
    with pytest.raises(Refused) as info:
        check_drain(payload)
    assert info.value.code == "invalid_payload" and needle in info.value.message


def test_empty_only_takes_nothing() -> None:
    empty_only({}, "nodes")
    with pytest.raises(Refused) as info:
        empty_only({"node": "n1"}, "nodes")
    assert info.value.code == "invalid_payload" and "nodes: use {} (unknown key 'node')" in info.value.message


# -- over NATS ------------------------------------------------------------------------------------


class Gate:
    """A shutdown callback that records it was asked, and returns only once released (from any thread)."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self._release = threading.Event()

    async def __call__(self) -> None:
        self.asked.set()
        await asyncio.get_running_loop().run_in_executor(None, self._release.wait, WAIT_S)

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def clusters() -> tuple[FakeCluster, FakeCluster]:
    return FakeCluster("node-a", ROWS), FakeCluster("node-b", ROWS)


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate()
    yield made
    made.release()


@pytest.fixture
def two(nats_server: EmbeddedNats, clusters: tuple[FakeCluster, FakeCluster],
        gate: Gate) -> Iterator[tuple[BridgeNode, BridgeNode]]:
    """node-a (no remote shutdown) and node-b (allows it: ``gate``), each with its fake cluster."""
    a = BridgeNode(nats_server.url, node_id="node-a", cluster=clusters[0])
    try:
        b = BridgeNode(nats_server.url, node_id="node-b", cluster=clusters[1], shutdown=gate)
    except BaseException:
        a.close()
        raise
    try:
        yield a, b
    finally:
        gate.release()
        b.close()
        a.close()


async def ask(nc: NATS, subject: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    reply: dict[str, Any] = orjson.loads((await nc.request(subject, data, timeout=WAIT_S)).data)
    return reply


def _on(a: BridgeNode, scenario: Any) -> Any:
    async def run() -> Any:
        nc, _ = await client(a.url)
        try:
            return await scenario(nc)
        finally:
            await nc.close()

    return a.run(run())


def test_nodes_answers_the_shared_table_from_any_node(two: tuple[BridgeNode, BridgeNode]) -> None:
    async def scenario(nc: NATS) -> None:
        for subject in ("system.control.nodes", "system.control.nodes"):
            reply = await ask(nc, subject, b"")
            assert reply == {"ok": True, "result": {"nodes": ROWS}}
        bad = await ask(nc, "system.control.nodes", {"node": "node-a"})
        assert bad["error"]["code"] == "invalid_payload" and "nodes: use {}" in bad["error"]["message"]

    _on(two[0], scenario)


def test_drain_names_its_node_and_goes_there(two: tuple[BridgeNode, BridgeNode],
                                             clusters: tuple[FakeCluster, FakeCluster]) -> None:
    fake_a, fake_b = clusters

    async def scenario(nc: NATS) -> None:
        missing = await ask(nc, "system.control.drain", {})
        assert missing["error"]["code"] == "invalid_payload"
        assert "name the node to drain" in missing["error"]["message"]
        # Whichever node the queue group picks, node-b drains (node-a forwards to system.node.node-b.drain).
        for _ in range(4):
            reply = await ask(nc, "system.control.drain", {"node": "node-b"})
            assert reply["result"] == {"node": "node-b", "handed_over": ["a1", "a2"], "not_handed_over": [],
                                       "exiting": False}
        direct = await ask(nc, "system.node.node-a.drain", {})
        assert direct["ok"] is True and direct["result"]["node"] == "node-a"
        wrong = await ask(nc, "system.node.node-a.drain", {"node": "node-b"})
        assert wrong["error"]["code"] == "invalid_payload" and "system.node.node-b.drain" in wrong["error"]["message"]
        nobody = await ask(nc, "system.control.drain", {"node": "node-z"})
        assert nobody["error"]["code"] == "unknown_node" and "node-z" in nobody["error"]["message"]

    _on(two[0], scenario)
    assert fake_b.drains == [False] * 4 and fake_a.drains == [False]


def test_drain_with_exit_needs_remote_shutdown_and_stops_the_node_after_its_reply(
    two: tuple[BridgeNode, BridgeNode], clusters: tuple[FakeCluster, FakeCluster], gate: Gate,
) -> None:
    fake_a, fake_b = clusters

    async def scenario(nc: NATS) -> None:
        refused = await ask(nc, "system.control.drain", {"node": "node-a", "exit": True})
        assert refused["error"]["code"] == "unauthorized"
        assert "nats.allow_remote_shutdown" in refused["error"]["message"]
        assert fake_a.drains == [], "refused before anything moved"
        # node-b's shutdown callback blocks until released: the reply must have been sent before it.
        reply = await ask(nc, "system.control.drain", {"node": "node-b", "exit": True})
        assert reply["result"]["exiting"] is True

    _on(two[0], scenario)
    assert gate.asked.wait(WAIT_S), "node-b drained with exit: it must stop"
    assert fake_b.drains == [True]


def test_a_drain_without_exit_does_not_stop_the_node(two: tuple[BridgeNode, BridgeNode], gate: Gate) -> None:
    async def scenario(nc: NATS) -> None:
        assert (await ask(nc, "system.node.node-b.drain", {"exit": False}))["result"]["exiting"] is False
        await ask(nc, "system.control.ping", {"node": "node-b"})  # a later request on node-b was handled

    _on(two[0], scenario)
    assert not gate.asked.is_set()


def test_rebalance_here_or_on_the_node_named(two: tuple[BridgeNode, BridgeNode],
                                            clusters: tuple[FakeCluster, FakeCluster]) -> None:
    fake_a, fake_b = clusters

    async def scenario(nc: NATS) -> None:
        anywhere = await ask(nc, "system.control.rebalance", {})
        assert anywhere["result"]["node"] in ("node-a", "node-b") and anywhere["result"]["moved"] == ["a3"]
        named = await ask(nc, "system.control.rebalance", {"node": "node-b"})
        assert named["result"] == {"node": "node-b", "moved": ["a3"], "target": 2}
        direct = await ask(nc, "system.node.node-a.rebalance", b"")
        assert direct["result"]["node"] == "node-a"
        nobody = await ask(nc, "system.control.rebalance", {"node": "node-z"})
        assert nobody["error"]["code"] == "unknown_node"
        bad = await ask(nc, "system.control.rebalance", {"exit": True})
        assert bad["error"]["code"] == "invalid_payload"

    _on(two[0], scenario)
    assert fake_a.rebalances + fake_b.rebalances == 3 and fake_b.rebalances >= 1 and fake_a.rebalances >= 1


def test_a_node_outside_a_cluster_answers_unavailable(nats_server: EmbeddedNats) -> None:
    lone = BridgeNode(nats_server.url, node_id="node-lone")
    try:
        async def scenario(nc: NATS) -> None:
            for subject, body in (("system.control.nodes", {}), ("system.node.node-lone.drain", {}),
                                  ("system.node.node-lone.rebalance", {})):
                reply = await ask(nc, subject, body)
                assert reply["error"]["code"] == "unavailable", subject
                assert "node-lone" in reply["error"]["message"] and "not in a cluster" in reply["error"]["message"]

        _on(lone, scenario)
    finally:
        lone.close()


def test_a_database_outage_is_unavailable_with_the_cause(nats_server: EmbeddedNats) -> None:
    down = FakeCluster("node-pg", error=ClusterUnavailableError("reading the cluster's nodes", "node-pg",
                                                                "connection refused"))
    node = BridgeNode(nats_server.url, node_id="node-pg", cluster=down)
    try:
        async def scenario(nc: NATS) -> None:
            reply = await ask(nc, "system.control.nodes", {})
            assert reply["error"]["code"] == "unavailable"
            assert "connection refused" in reply["error"]["message"]

        _on(node, scenario)
    finally:
        node.close()
