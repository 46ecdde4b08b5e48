"""The service directory (agents.discovery.announce / query), and publishing shared knowledge on
discoveries.{agent_id}.{discovery_type} (two nodes, one server)."""

from __future__ import annotations

import asyncio

import orjson
from _bridge_helpers import WAIT_S, BridgeNode, Inbox, client

from mistersmith.bridge.services import ServiceDirectory
from mistersmith.discovery import Discovery
from mistersmith.envelope import decode_envelope


def test_an_agent_is_announced_when_it_starts(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, _ = pair

    async def scenario() -> None:
        nc, ms = await client(a.url)
        try:
            inbox = await Inbox().subscribe(nc, "agents.discovery.announce")
            await ms.spawn("echo", "ann", node="node-b")
            while True:
                env = decode_envelope((await inbox.next()).data)
                if env.payload["id"] == "ann":
                    break
        finally:
            await nc.close()
        assert env.type == "announce" and env.source == "node-b"
        p = env.payload
        assert (p["kind"], p["node"], p["state"]) == ("echo", "node-b", "idle")
        assert {"echo", "fail", "hang", "ping", "status", "pause", "resume"} <= set(p["commands"])

    a.run(scenario())


def test_query_by_kind_command_and_node_across_nodes(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, b = pair

    async def scenario() -> None:
        nc, ms = await client(b.url)
        try:
            inbox = await Inbox().subscribe(nc, "agents.discovery.announce")
            await ms.spawn("echo", "qa", node="node-a")
            await ms.spawn("echo", "qb", node="node-b")
            announced: set[str] = set()
            while announced != {"qa", "qb"}:  # the kinds' commands are known once announced
                announced.add(decode_envelope((await inbox.next()).data).payload["id"])
            by_kind = await ms.query(kind="echo")
            assert {x["id"] for x in by_kind["agents"]} == {"qa", "qb"}
            assert by_kind["nodes"] == ["node-a", "node-b"] and by_kind["missing"] == []
            assert {x["id"] for x in (await ms.query(command="hang"))["agents"]} == {"qa", "qb"}
            assert (await ms.query(command="no-such-command"))["agents"] == []
            assert [x["id"] for x in (await ms.query(node="node-a"))["agents"]] == ["qa"]
        finally:
            await nc.close()

    b.run(scenario())


async def _until_busy(node: BridgeNode, agent_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while node.rt.get_agent(agent_id)["state"] != "busy":
        assert asyncio.get_running_loop().time() < deadline, "the agent never started the hang"
        await asyncio.sleep(0.01)  # polling a state with a deadline, not ordering by time


def test_a_busy_agent_is_described_and_found_by_its_commands(pair: tuple[BridgeNode, BridgeNode]) -> None:
    """Its kind's commands come from the Runtime's kinds, never from the agent's mailbox."""
    a, _ = pair

    async def scenario() -> None:
        assert a.bridge is not None
        nc, ms = await client(a.url)
        try:
            await ms.spawn("echo", "busy", node="node-a")
            await ms.tell("busy", "hang", {"seconds": 30.0})
            await _until_busy(a, "busy")
            fresh = ServiceDirectory(a.rt, a.bridge.wire, a.bridge.counters, gather=a.bridge.control.gather,
                                     filters=dict)  # nothing learnt before: it reads the kinds
            [described] = [d for d in await fresh.local_agents() if d["id"] == "busy"]
            assert described["state"] == "busy" and "hang" in described["commands"]
            assert "busy" in {x["id"] for x in (await ms.query(command="hang"))["agents"]}
            assert "busy" in {x["id"] for x in (await ms.control("list", {"command": "echo"}))["agents"]}
        finally:
            await nc.close()
            await a.rt.astop("busy")  # cancels the hang

    a.run(scenario())


def test_discoveries_are_published_on_their_subject(pair: tuple[BridgeNode, BridgeNode]) -> None:
    a, _ = pair
    found = Discovery(agent_id="ag1", agent_role="researcher", discovery_type="insight", content="x", confidence=0.9)

    async def scenario() -> None:
        assert a.bridge is not None
        nc, _ = await client(a.url)
        try:
            inbox = await Inbox().subscribe(nc, "discoveries.ag1.*")
            await a.bridge.publish_discovery(found)
            msg = await inbox.next()
        finally:
            await nc.close()
        assert msg.subject == "discoveries.ag1.insight"
        assert Discovery.from_dict(orjson.loads(msg.data)) == found

    a.run(scenario())
