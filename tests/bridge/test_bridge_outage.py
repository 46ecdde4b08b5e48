"""The NATS server stopped and started again mid-run (its own server, same port)."""

from __future__ import annotations

import asyncio

import pytest
from _bridge_helpers import WAIT_S, Inbox, BridgeNode, connect_options, wait_until

from mistersmith.bridge import AgentClient, ConnectionStats, NatsUnavailableError, connect
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import decode_envelope


def test_node_reconnects_and_resumes_after_an_outage(own_nats: EmbeddedNats) -> None:
    node = BridgeNode(own_nats.url)
    try:
        assert node.bridge is not None
        bridge = node.bridge

        async def before() -> tuple[AgentClient, ConnectionStats, Inbox]:
            await bridge.aspawn("echo", "steady")
            nc, stats = await connect(connect_options(own_nats.url))
            ms = AgentClient(nc, timeout_s=WAIT_S)
            assert await ms.request("steady", "ping") == {"pong": True, "agent_id": "steady"}
            inbox = await Inbox().subscribe(nc, "agents.during.status.*")
            return ms, stats, inbox

        ms, client_stats, inbox = node.run(before())

        own_nats.stop()

        async def outage() -> None:
            assert await bridge.connection_stats.wait_for(lambda s: s.disconnects >= 1, WAIT_S)
            assert await client_stats.wait_for(lambda s: s.disconnects >= 1, WAIT_S)
            assert not bridge.stats()["connected"]
            with pytest.raises(NatsUnavailableError, match="reconnecting") as info:
                await ms.request("steady", "ping")
            assert info.value.code == "unavailable"
            # the node goes on working; what it publishes meanwhile is buffered (bounded)
            published = bridge.stats()["events_published"]
            await bridge.aspawn("echo", "during")
            # the event crosses from the agent's thread to the loop: poke with a round trip that crosses too
            await wait_until(lambda: bridge.stats()["events_published"] > published,
                             poke=lambda: node.rt.aask("steady", "ping", timeout=WAIT_S))
            assert await node.rt.aask("steady", "ping", timeout=WAIT_S) == {"pong": True, "agent_id": "steady"}

        node.run(outage())
        own_nats.start()  # the same port: both connections come back by themselves

        async def after() -> None:
            assert await bridge.connection_stats.wait_for(lambda s: s.reconnects >= 1, WAIT_S)
            assert await client_stats.wait_for(lambda s: s.reconnects >= 1, WAIT_S)
            await ms.nc.flush()
            assert await ms.request("steady", "ping") == {"pong": True, "agent_id": "steady"}
            assert await ms.request("during", "echo", {"x": 1}) == {"x": 1}
            assert (await ms.control("ping"))["node"] == node.node_id
            # status events flow again (what was buffered reached the server before or after
            # this subscriber came back: core NATS delivers to the subscribers present)
            await ms.control("restart", {"agent_id": "during"})
            while (event := decode_envelope((await inbox.next()).data)).type != "restarted":
                pass
            assert event.target == "during" and event.payload["restart_count"] == 1
            await ms.nc.close()

        node.run(after())
        assert bridge.stats()["publish_failed"] == 0
    finally:
        node.close()


def test_requests_while_disconnected_fail_at_once(own_nats: EmbeddedNats) -> None:
    async def scenario() -> None:
        nc, stats = await connect(connect_options(own_nats.url))
        ms = AgentClient(nc, timeout_s=WAIT_S)
        try:
            await asyncio.get_running_loop().run_in_executor(None, own_nats.stop)
            assert await stats.wait_for(lambda s: s.disconnects >= 1, WAIT_S)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for call in (ms.request("x", "ping"), ms.tell("x", "ping"), ms.control("list")):
                with pytest.raises(NatsUnavailableError):
                    await call
            assert loop.time() - start < 1.0  # not a timeout
        finally:
            await nc.close()

    asyncio.run(scenario())
