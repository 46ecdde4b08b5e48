"""Run by tests/web/test_mcp_clients.py with the MCP SDK 1.x: ``python client_v1.py URL [TOKEN]``.

Drives the server as a 1.x user would (``ClientSession`` over the streamable
HTTP client) and prints one JSON object with what it saw.
"""

import asyncio
import json
import sys

import httpx
from importlib.metadata import version
from mcp import ClientSession

try:
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # older 1.x
    streamable_http_client = None
from mcp.client.streamable_http import streamablehttp_client


def transport(url, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if streamable_http_client is not None:
        return streamable_http_client(url, http_client=httpx.AsyncClient(headers=headers, timeout=30))
    return streamablehttp_client(url, headers=headers)


async def main(url, token):
    seen = {}
    async with transport(url, token) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            seen["protocol_version"] = init.protocolVersion
            seen["server_name"] = init.serverInfo.name
            seen["session_id"] = streams[2]() if len(streams) > 2 else None
            await session.send_ping()
            tools = await session.list_tools()
            seen["tools"] = sorted(t.name for t in tools.tools)
            seen["output_schemas"] = all(t.outputSchema for t in tools.tools)
            spawned = await session.call_tool("spawn_agent", {"kind": "echo", "agent_id": "v1-echo"})
            seen["spawned"] = spawned.structuredContent
            echoed = await session.call_tool("send_command",
                                             {"agent_id": "v1-echo", "command": "echo", "payload": {"n": 7}})
            seen["echoed"] = echoed.structuredContent
            missing = await session.call_tool("get_agent", {"agent_id": "nobody"})
            seen["missing"] = {"isError": missing.isError, "text": missing.content[0].text}
            resource = await session.read_resource("agent://v1-echo")
            seen["resource"] = json.loads(resource.contents[0].text)
            templates = await session.list_resource_templates()
            seen["templates"] = sorted(t.uriTemplate for t in templates.resourceTemplates)
            shared = await session.call_tool("share_discovery", {
                "agent_id": "v1-echo", "agent_role": "tester", "discovery_type": "pattern",
                "content": "1.x clients work", "confidence": 0.9})
            seen["shared"] = shared.structuredContent
    seen["mcp_version"] = version("mcp")
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
