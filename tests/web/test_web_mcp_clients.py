"""The official MCP Python SDK, 2.x (this environment) and 1.x (a virtualenv of its own),
against a real server on loopback, used as their users would use them."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from _web import TOKEN, Served

CLIENT_V1 = Path(__file__).resolve().parent.parent / "mcp1" / "client_v1.py"
TOOLS = sorted(["spawn_agent", "stop_agent", "restart_agent", "list_agents", "get_agent", "get_agent_state",
                "supervision_tree", "send_command",
                "submit_task", "get_task", "share_discovery", "query_discoveries", "replay_events", "system_health",
                "list_nodes", "audit_log"])


async def _session_walk(client: mcp.Client) -> dict[str, object]:
    tools = await client.list_tools()
    assert sorted(t.name for t in tools.tools) == TOOLS
    assert all(t.output_schema for t in tools.tools)
    spawned = await client.call_tool("spawn_agent", {"kind": "echo", "agent_id": "sdk-echo"})
    assert not spawned.is_error
    assert spawned.structured_content is not None
    assert spawned.structured_content["agent"]["state"] in ("idle", "running")
    echoed = await client.call_tool("send_command", {"agent_id": "sdk-echo", "command": "echo",
                                                      "payload": {"hello": "world"}})
    assert echoed.structured_content == {"agent_id": "sdk-echo", "command": "echo", "result": {"hello": "world"}}
    assert json.loads(echoed.content[0].text) == echoed.structured_content  # type: ignore[union-attr]
    failed = await client.call_tool("send_command", {"agent_id": "ghost", "command": "echo"})
    assert failed.is_error
    assert "unknown_agent" in failed.content[0].text  # type: ignore[union-attr]
    resource = await client.read_resource("agent://sdk-echo")
    assert json.loads(resource.contents[0].text)["id"] == "sdk-echo"  # type: ignore[union-attr]
    listed = await client.list_resources()
    assert [r.uri for r in listed.resources] == ["agent://sdk-echo"]
    templates = await client.list_resource_templates()
    assert sorted(t.uri_template for t in templates.resource_templates) == ["agent://{id}", "discovery://{id}"]
    shared = await client.call_tool("share_discovery", {"agent_id": "sdk-echo", "agent_role": "tester",
                                                        "discovery_type": "insight", "content": "it works",
                                                        "confidence": 0.75})
    assert shared.structured_content is not None
    discovery_id = shared.structured_content["discovery"]["id"]
    read = await client.read_resource(f"discovery://{discovery_id}")
    assert json.loads(read.contents[0].text)["content"] == "it works"  # type: ignore[union-attr]
    stopped = await client.call_tool("stop_agent", {"agent_id": "sdk-echo"})
    assert stopped.structured_content == {"agent_id": "sdk-echo", "stopped": True}
    return {"version": client.session.protocol_version}


def test_sdk2_client_in_default_auto_mode_speaks_2026_07_28(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> dict[str, object]:
        async with mcp.Client(served.url + "/mcp") as client:
            return await _session_walk(client)

    assert asyncio.run(main()) == {"version": "2026-07-28"}
    assert len(served.app.sessions) == 0  # stateless: no session was made


@pytest.mark.filterwarnings("ignore:ping is removed")
def test_sdk2_client_in_legacy_mode_uses_a_2025_11_25_session(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> dict[str, object]:
        async with mcp.Client(served.url + "/mcp", mode="legacy") as client:
            await client.send_ping()
            assert len(served.app.sessions) == 1
            return await _session_walk(client)

    assert asyncio.run(main()) == {"version": "2025-11-25"}
    assert len(served.app.sessions) == 0  # the client ended its session with DELETE on exit


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk2_client_with_a_bearer_token(serve: Callable[..., Served], mode: str) -> None:
    served = serve(api_token=TOKEN)

    async def main(token: str) -> list[str]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        async with mcp.Client(streamable_http_client(served.url + "/mcp", http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            return [t.name for t in tools.tools]

    assert sorted(asyncio.run(main(TOKEN))) == TOOLS
    with pytest.raises(Exception) as refused:
        asyncio.run(main("wrong-token-0123456789"))
    assert refused.value is not None
    # counted before the 401 is sent (the request's own status line is counted once its answer went,
    # which may be after the client has read it)
    assert served.app.metrics.render().count('reason="401"') >= 1


def test_sdk1_client_session_over_streamable_http(serve: Callable[..., Served], mcp1_python: Path) -> None:
    served = serve(api_token=TOKEN)
    done = subprocess.run([str(mcp1_python), str(CLIENT_V1), served.url + "/mcp", TOKEN],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["mcp_version"].startswith("1.")
    assert seen["protocol_version"] == "2025-11-25"
    assert seen["server_name"] == "mistersmith"
    assert seen["session_id"]
    assert seen["tools"] == TOOLS
    assert seen["output_schemas"] is True
    assert seen["spawned"]["agent_id"] == "v1-echo"
    assert seen["echoed"] == {"agent_id": "v1-echo", "command": "echo", "result": {"n": 7}}
    assert seen["missing"]["isError"] is True
    assert "unknown_agent" in seen["missing"]["text"]
    assert seen["resource"]["id"] == "v1-echo"
    assert seen["templates"] == ["agent://{id}", "discovery://{id}"]
    assert seen["shared"]["discovery"]["seq"] == 1
    assert served.runtime.get_agent("v1-echo")["kind"] == "echo"
