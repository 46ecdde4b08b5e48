"""system.control.*: spawn placement, list and tree across nodes, stop/restart/get anywhere (two nodes, one server)."""

from __future__ import annotations

import threading
from typing import Any

import nats
import orjson
import pytest
from _bridge_helpers import WAIT_S, BridgeNode, client
from nats.aio.client import Client as NATS

from mistersmith import SupervisorSpec
from mistersmith.bridge import BridgeOptions
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import RemoteError


async def ms_spawn(nc: NATS, agent_id: str) -> None:
    reply = await nc.request("system.control.spawn", orjson.dumps({"kind": "echo", "agent_id": agent_id}),
                             timeout=WAIT_S)
    assert orjson.loads(reply.data)["ok"] is True


def _hosts(node: BridgeNode) -> set[str]:
    return {str(info["id"]) for info in node.rt.list_agents()}


def test_spawn_is_placed_on_exactly_one_node(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> list[dict[str, Any]]:
        nc, ms = await client(a.url)
        try:
            placed = [await ms.spawn("echo") for _ in range(12)]
            for p in placed:  # each one answers from the node that placed it
                assert await ms.request(p["agent_id"], "ping") == {"pong": True, "agent_id": p["agent_id"]}
            return placed
        finally:
            await nc.close()

    placed = a.run(scenario())
    ids = [p["agent_id"] for p in placed]
    assert len(set(ids)) == 12
    assert _hosts(a) | _hosts(b) == set(ids) and not _hosts(a) & _hosts(b)
    for p in placed:
        assert p["agent_id"] in _hosts(a if p["node"] == "node-a" else b)


def test_spawn_on_a_named_node(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            for i in range(4):  # whichever node the queue group picks, it lands on node-b
                assert await ms.spawn("echo", f"on-b-{i}", node="node-b") == {"agent_id": f"on-b-{i}", "node": "node-b"}
            with pytest.raises(RemoteError) as info:
                await ms.spawn("echo", node="node-zz")
            assert info.value.code == "unknown_node"
            with pytest.raises(RemoteError) as info:  # ids are global
                await ms.spawn("echo", "on-b-0", node="node-a")
            assert info.value.code == "already_exists"
        finally:
            await nc.close()

    a.run(scenario())
    assert _hosts(b) == {f"on-b-{i}" for i in range(4)} and not _hosts(a)


def test_list_covers_every_node_and_filters(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            await ms.spawn("echo", "la", node="node-a")
            await ms.spawn("echo", "lb", node="node-b")
            listing = await ms.control("list")
            assert listing["nodes"] == ["node-a", "node-b"] and listing["missing"] == []
            assert {(x["id"], x["node_id"]) for x in listing["agents"]} == {("la", "node-a"), ("lb", "node-b")}
            only_b = await ms.control("list", {"node": "node-b"})
            assert [x["id"] for x in only_b["agents"]] == ["lb"]
            assert (await ms.control("list", {"kind": "nothing"}))["agents"] == []
        finally:
            await nc.close()

    a.run(scenario())


def _child(tree: dict[str, Any], child_id: str) -> dict[str, Any]:
    found = [c for c in tree.get("children") or () if c["id"] == child_id]
    assert len(found) == 1, tree
    return found[0]


def test_tree_shows_a_nested_supervisor_with_its_strategy_and_children(node: BridgeNode) -> None:
    path = node.rt.add_supervisor(SupervisorSpec("workers", strategy="one_for_all", intensity=2, period_s=7.5))
    node.rt.spawn("echo", "top")

    async def scenario() -> dict[str, Any]:
        nc, ms = await client(node.url)
        try:
            await ms.spawn("echo", "w1", supervisor=path)
            await ms.spawn("echo", "w2", supervisor=path)
            answer: dict[str, Any] = await ms.control("tree", {"node": node.node_id})
            return answer
        finally:
            await nc.close()

    answer = node.run(scenario())
    assert answer["nodes"] == [node.node_id] and answer["missing"] == [] and list(answer["trees"]) == [node.node_id]
    tree = answer["trees"][node.node_id]
    assert tree == node.rt.tree() | {"children": tree["children"]}  # Runtime.tree() of that node
    assert (tree["id"], tree["type"], tree["node_id"]) == ("root", "supervisor", node.node_id)
    assert [c["id"] for c in tree["children"]] == ["workers", "top"]  # start order
    workers = _child(tree, "workers")
    assert (workers["type"], workers["path"], workers["strategy"], workers["intensity"], workers["period_s"]) == (
        "supervisor", "root/workers", "one_for_all", 2, 7.5)
    assert [(c["id"], c["kind"], c["supervisor"]) for c in workers["children"]] == [
        ("w1", "echo", "root/workers"), ("w2", "echo", "root/workers")]


def test_tree_covers_every_node_or_the_one_named(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            await ms.spawn("echo", "ta", node="node-a")
            await ms.spawn("echo", "tb", node="node-b")
            for _ in range(4):  # whichever node the queue group picks, the answer is the same
                both = await ms.control("tree")
                assert both["nodes"] == ["node-a", "node-b"] and both["missing"] == []
                assert list(both["trees"]) == ["node-a", "node-b"]
                assert [c["id"] for c in both["trees"]["node-a"]["children"]] == ["ta"]
                assert [c["id"] for c in both["trees"]["node-b"]["children"]] == ["tb"]
                only_b = await ms.control("tree", {"node": "node-b"})
                assert only_b["nodes"] == ["node-b"] and only_b["missing"] == [] and list(only_b["trees"]) == ["node-b"]
                assert only_b["trees"]["node-b"]["children"][0]["id"] == "tb"
        finally:
            await nc.close()

    a.run(scenario())


def test_tree_of_a_node_that_does_not_answer_is_missing(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, node_id="node-t", options=BridgeOptions(gather_timeout_s=0.5))
    try:
        async def scenario() -> tuple[dict[str, Any], RemoteError]:
            nc, ms = await client(node.url)
            try:
                answer: dict[str, Any] = await ms.control("tree", {"node": "node-zz"})
                with pytest.raises(RemoteError) as info:
                    await ms.control("tree", {"node": "node-t", "depth": 2})
                return answer, info.value
            finally:
                await nc.close()

        answer, refused = node.run(scenario())
        assert answer == {"trees": {}, "nodes": [], "missing": ["node-zz"]}
        assert refused.code == "invalid_payload" and '{"node": "<node id>"}' in str(refused), str(refused)
    finally:
        node.close()


def test_stop_restart_get_reach_the_hosting_node(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            await ms.spawn("echo", "far", node="node-b")
            got = await ms.control("get", {"agent_id": "far"})
            assert got["id"] == "far" and got["node_id"] == "node-b" and got["restart_count"] == 0
            restarted = await ms.control("restart", {"agent_id": "far"})
            assert restarted == {"agent_id": "far", "node": "node-b", "restarted": True}
            assert (await ms.control("get", {"agent_id": "far"}))["restart_count"] == 1
            assert await ms.request("far", "ping") == {"pong": True, "agent_id": "far"}
            assert await ms.control("stop", {"agent_id": "far"}) == {"agent_id": "far", "node": "node-b", "stopped": True}
            with pytest.raises(RemoteError) as info:  # gone: no responders again
                await ms.request("far", "ping")
            assert info.value.code == "unknown_agent"
            with pytest.raises(RemoteError) as info:
                await ms.control("stop", {"agent_id": "far"})
            assert info.value.code == "unknown_agent"
        finally:
            await nc.close()

    a.run(scenario())
    assert "far" not in _hosts(b)


def test_restart_with_reset_state_reaches_the_hosting_node_and_refuses_a_plain_agent(
    pair: tuple[BridgeNode, BridgeNode],
) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            await ms.control("spawn", {"kind": "echo", "agent_id": "kept", "durable": True, "node": "node-b"})
            await ms.spawn("echo", "plain", node="node-b")
            reset = await ms.control("restart", {"agent_id": "kept", "reset_state": True})  # forwarded to node-b
            assert reset == {"agent_id": "kept", "node": "node-b", "restarted": True, "state_reset": True}
            assert (await ms.control("get", {"agent_id": "kept"}))["restart_count"] == 1
            with pytest.raises(RemoteError) as info:
                await ms.control("restart", {"agent_id": "plain", "reset_state": True})
            assert info.value.code == "invalid_spec" and "not durable" in str(info.value)
            assert (await ms.control("get", {"agent_id": "plain"}))["restart_count"] == 0
        finally:
            await nc.close()

    a.run(scenario())
    assert {"kept", "plain"} <= _hosts(b)


def test_ping_and_shutdown(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            pong = await ms.control("ping", {"node": "node-b"})
            assert pong["node"] == "node-b" and pong["nodes"] == ["node-a", "node-b"]
            assert (await ms.control("ping"))["node"] in ("node-a", "node-b")
            with pytest.raises(RemoteError) as info:
                await ms.control("shutdown", {"node": "node-b"})
            assert info.value.code == "unauthorized"
        finally:
            await nc.close()

    a.run(scenario())


@pytest.mark.parametrize(
    ("action", "body", "code"),
    [
        ("spawn", b"{}", "invalid_payload"),
        ("spawn", b'{"kind": "echo", "colour": "red"}', "invalid_payload"),
        ("spawn", b'{"kind": "echo", "restart": "sometimes"}', "invalid_spec"),
        ("spawn", b'{"kind": "no-such-kind"}', "invalid_spec"),
        ("stop", b"{}", "invalid_payload"),
        ("restart", b'{"agent_id": "x", "reset_state": "yes"}', "invalid_payload"),
        ("stop", b'{"agent_id": "x", "reset_state": true}', "invalid_payload"),
        ("get", b'{"agent_id": "a.b"}', "invalid_payload"),
        ("list", b'{"colour": "red"}', "invalid_payload"),
        ("tree", b'{"colour": "red"}', "invalid_payload"),
        ("tree", b'{"node": "a.b"}', "invalid_payload"),
        ("tree", b'{"node": 7}', "invalid_payload"),
        ("shutdown", b"{}", "invalid_payload"),
        ("explode", b"{}", "unknown_command"),
        ("spawn", b"[]", "invalid_payload"),
        ("spawn", b"{", "invalid_envelope"),
        ("agent:spawn", b'{"kind": "echo"}', "unknown_command"),
    ],
)
def test_bad_control_requests_get_error_replies(pair: tuple[BridgeNode, BridgeNode], action: str, body: bytes,
                                                 code: str) -> None:
    a, _ = pair

    async def scenario() -> None:
        nc = await nats.connect(a.url)
        try:
            if action.startswith("agent:"):  # an agent's own control subject (its node answers)
                await ms_spawn(nc, "ctl")
                subject = f"agents.ctl.control.{action.split(':')[1]}"
            else:
                subject = f"system.control.{action}"
            reply = orjson.loads((await nc.request(subject, body, timeout=WAIT_S)).data)
            assert reply["ok"] is False and reply["error"]["code"] == code, reply
        finally:
            await nc.close()

    a.run(scenario())


def test_shutdown_on_system_control_stops_a_node_that_allows_it(nats_server: EmbeddedNats) -> None:
    asked = threading.Event()

    async def shutdown() -> None:
        asked.set()

    node = BridgeNode(nats_server.url, node_id="node-s", shutdown=shutdown)
    try:
        async def scenario() -> dict[str, Any]:
            nc, ms = await client(node.url)
            try:
                answer: dict[str, Any] = await ms.control("shutdown", {"node": "node-s"})
                return answer
            finally:
                await nc.close()

        assert node.run(scenario()) == {"node": "node-s", "shutting_down": True}
        assert asked.wait(10), "the node answered ok on system.control.shutdown, so it must stop"
    finally:
        node.close()
