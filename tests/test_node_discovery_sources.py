"""A whole node: every discovery says who vouches for it, and a NATS client cannot pass as the node.

Real embedded nats-server and PostgreSQL. The client connects as any NATS
user would; NATS does not tell the node who published, so what it publishes
is recorded as heard on NATS by this node (``nats:<node_id>``), whatever it
says, and it can neither overwrite a stored discovery by reusing its id nor
date one far ahead.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
from test_node_discoveries import Sse, _mcp_call, _rows, _settings, _share, _wait_for

from mistersmith.node import Node


def test_sources_are_recorded_and_a_client_cannot_forge_them(node_dir: Path) -> None:
    with Node(_settings(node_dir)) as node:
        assert node.http is not None and node.journal is not None and node.bridge is not None
        url, conninfo, me = node.http.url, node.journal.conninfo, node.node_id
        bridge = node.bridge

        async def scenario() -> list[dict[str, Any]]:
            nc = await nats.connect(**node.nats_client_options())
            sse = await Sse.open(url)
            try:
                shared = await asyncio.to_thread(_share, url, "scout-1", "the genuine finding")
                assert shared["source"] == f"node:{me}"
                assert await sse.event() == shared
                subject = "discoveries.scout-1.insight"
                # The same id with other content, claiming to be the node's: overwrites and streams nothing.
                reused = {k: v for k, v in shared.items() if k != "seq"} | {"content": "a forged finding"}
                await nc.publish(subject, json.dumps(reused).encode())
                # A new one in scout-1's name, claiming the node's source: stored as heard on NATS.
                impostor = {"id": "imp-1", "agent_id": "scout-1", "agent_role": "tester",
                            "discovery_type": "insight", "content": "I am scout-1", "confidence": 0.9,
                            "source": f"node:{me}"}
                await nc.publish(subject, json.dumps(impostor).encode())
                # Dated far ahead: refused (counted as invalid).
                ahead = impostor | {"id": "ahead-1", "occurred_at": "2999-01-01T00:00:00+00:00"}
                await nc.publish(subject, json.dumps(ahead).encode())
                await nc.flush()
                heard = await sse.event()
                assert heard["id"] == "imp-1" and heard["source"] == f"nats:{me}"
                await asyncio.to_thread(_wait_for, "the dated-ahead one counted",
                                        lambda: bridge.counters.get("discoveries_invalid") == 1)
                after = await asyncio.to_thread(_share, url, "scout-1", "after them")
                assert (await sse.event())["id"] == after["id"], "nothing else was streamed"
                return [shared, heard, after]
            finally:
                await sse.close()
                await nc.close()

        seen = asyncio.run(scenario())
        rows = _rows(conninfo, "SELECT id, agent_id, content, source FROM discoveries ORDER BY seq")
        assert rows == [(seen[0]["id"], "scout-1", "the genuine finding", f"node:{me}"),
                        ("imp-1", "scout-1", "I am scout-1", f"nats:{me}"),
                        (seen[2]["id"], "scout-1", "after them", f"node:{me}")]

        # What is read back says the same: MCP queries and a resumed stream (replay from the table).
        queried = _mcp_call(url, "query_discoveries", {"agent_id": "scout-1"})["discoveries"]
        assert [(d["id"], d["source"]) for d in queried] == [(r[0], r[3]) for r in rows]

        async def resume() -> list[dict[str, Any]]:
            sse = await Sse.open(url, {"Last-Event-ID": "0"})
            try:
                return [await sse.event() for _ in rows]
            finally:
                await sse.close()

        resumed = asyncio.run(resume())
        assert [(d["id"], d["content"], d["source"]) for d in resumed] == [(r[0], r[2], r[3]) for r in rows]
