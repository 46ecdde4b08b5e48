"""agents.discovery.announce / query, and discoveries.{agent}.{type} (two nodes, one server)."""

from __future__ import annotations

import orjson
from _bridge_helpers import Inbox, Node, client

from mistersmith.discovery import Discovery
from mistersmith.envelope import decode_envelope


def test_an_agent_is_announced_when_it_starts(pair: tuple[Node, Node]) -> None:
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


def test_query_by_kind_command_and_node_across_nodes(pair: tuple[Node, Node]) -> None:
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


def test_discoveries_are_published_on_their_subject(pair: tuple[Node, Node]) -> None:
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
