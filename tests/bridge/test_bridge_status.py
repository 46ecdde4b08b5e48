"""agents.{id}.status.{type}: every supervision event, in order; heartbeats (real nats-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _bridge_helpers import WAIT_S, BridgeNode, Inbox, client

from mistersmith.bridge import BridgeOptions
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import RemoteError, decode_envelope


def test_crash_restart_sequence_is_published_in_order(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None and node.nc is not None
        nc, ms = await client(node.url)
        try:
            inbox = await Inbox().subscribe(nc, "agents.s1.status.*")
            await node.bridge.aspawn("echo", "s1")
            await _reachable(ms, nc, "s1")
            with pytest.raises(RemoteError) as info:
                await ms.request("s1", "fail", {"message": "boom"})
            assert info.value.code == "agent_failed", (info.value.code, info.value.message)
            seen = []
            while not seen or seen[-1].type != "restarted":
                msg = await inbox.next()
                env = decode_envelope(msg.data)
                if env.type == "heartbeat":
                    continue
                assert msg.subject == f"agents.s1.status.{env.type}"
                seen.append(env)
            assert await ms.request("s1", "ping") == {"pong": True, "agent_id": "s1"}
        finally:
            await nc.close()
        expected = node.rt.history(agent_id="s1")
        assert [e.type for e in seen] == [e.event_type for e in expected][: len(seen)]
        assert [e.type for e in seen][0] == "started" and "failed" in [e.type for e in seen]
        assert [e.payload["seq"] for e in seen] == [e.seq for e in expected][: len(seen)]
        assert all(e.source == node.node_id and e.target == "s1" for e in seen)
        assert seen[-1].payload["restart_count"] == 1
        assert "boom" in next(e for e in seen if e.type == "failed").payload["reason"]

    node.run(scenario())


async def _reachable(ms: Any, nc: Any, agent_id: str) -> None:
    """Wait (bounded) until a request from this connection reaches the agent.

    ``Bridge.aspawn`` returns once the node's nats-server has the agent's subscriptions (a
    flush), yet two clean-clone CI runs saw this test's first request get "no responders";
    not understood yet (see the session-3 note). The status sequence this test checks does
    not depend on it, so it waits for the agent to answer first, re-checking after each
    round trip."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        try:
            await ms.request(agent_id, "ping")
            return
        except RemoteError as exc:
            if exc.code != "unknown_agent" or loop.time() > deadline:
                raise
        await nc.flush()


@pytest.fixture
def beating(nats_server: EmbeddedNats) -> Iterator[BridgeNode]:
    n = BridgeNode(nats_server.url, options=BridgeOptions(heartbeat_interval_s=0.05))
    try:
        yield n
    finally:
        n.close()


def test_heartbeats_carry_state_depth_and_restarts(beating: BridgeNode) -> None:
    async def scenario() -> None:
        assert beating.bridge is not None
        nc, _ = await client(beating.url)
        try:
            inbox = await Inbox().subscribe(nc, "agents.hb.status.heartbeat")
            await beating.bridge.aspawn("echo", "hb")
            env = decode_envelope((await inbox.next()).data)
        finally:
            await nc.close()
        assert env.type == "heartbeat" and env.source == beating.node_id
        assert env.payload["state"] in ("idle", "busy")
        assert env.payload["mailbox_depth"] == 0 and env.payload["restart_count"] == 0
        assert env.payload["node_id"] == beating.node_id and env.payload["kind"] == "echo"

    beating.run(scenario())
