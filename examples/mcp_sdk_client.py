"""Drive a MisterSmith node with the official MCP Python SDK (``pip install mcp``), as an LLM host would.

Starts ``mistersmith serve`` as a subprocess (temporary data directory, free
ports), connects ``mcp.Client`` to its ``/mcp`` endpoint (streamable HTTP),
lists the tools, spawns an echo agent with ``spawn_agent``, sends it a
command with ``send_command``, reads it back as the resource ``agent://ID``,
stops it with ``stop_agent``, and stops the node with SIGTERM.

Run it: ``python examples/mcp_sdk_client.py``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import mcp
except ImportError:  # the SDK is not a dependency of MisterSmith itself
    raise SystemExit("this example needs the official MCP SDK: pip install mcp (it is in the dev extra)") from None


def start_node(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``mistersmith serve --json`` prints one line once the node is up: where it listens."""
    log = open(data_dir.parent / "serve.log", "w")  # noqa: SIM115 - the node's logs, kept out of our output
    proc = subprocess.Popen(
        [sys.executable, "-m", "mistersmith", "serve", "--data-dir", str(data_dir), "--http-port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until ready; empty if the node failed to start
    if not line:
        proc.wait()
        raise SystemExit(f"the node did not start:\n{(data_dir.parent / 'serve.log').read_text()}")
    return proc, json.loads(line)


async def call(client: mcp.Client, tool: str, **arguments: Any) -> Any:
    """One ``tools/call``: its structured result, or SystemExit with the tool's error."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise SystemExit(f"{tool} failed: {result.content[0].text if result.content else result}")
    return result.structured_content


async def drive(mcp_url: str) -> None:
    async with mcp.Client(mcp_url) as client:
        tools = await client.list_tools()
        print("tools          ->", ", ".join(sorted(t.name for t in tools.tools)))

        spawned = await call(client, "spawn_agent", kind="echo", agent_id="mcp-1")
        print("spawn_agent    ->", spawned["agent"]["id"], spawned["agent"]["state"])
        echoed = await call(client, "send_command", agent_id="mcp-1", command="echo", payload={"via": "mcp sdk"})
        print("send_command   ->", echoed["result"])

        resource = await client.read_resource("agent://mcp-1")
        agent = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
        print("agent://mcp-1  ->", agent["kind"], agent["state"], "restarts", agent["restart_count"])

        missing = await client.call_tool("send_command", {"agent_id": "nobody", "command": "echo"})
        print("unknown agent  -> isError", missing.is_error)

        print("stop_agent     ->", await call(client, "stop_agent", agent_id="mcp-1"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
        proc, node = start_node(Path(tmp) / "node")
        print(f"node {node['node_id']} is up; MCP at {node['http_url']}/mcp")
        try:
            asyncio.run(drive(node["http_url"] + "/mcp"))
        finally:
            proc.send_signal(signal.SIGTERM)
            print("node exited with", proc.wait(60))


if __name__ == "__main__":
    main()
