"""Control a MisterSmith node over HTTP: JSON-RPC 2.0 POSTs to ``/mcp``, with only urllib.

Starts ``mistersmith serve`` as a subprocess (temporary data directory, free
ports), reads ``/health`` and ``/info``, then speaks MCP (the Model Context
Protocol) as a plain JSON-RPC client: ``initialize`` (which gives a session
id), ``tools/list``, and ``tools/call`` for ``spawn_agent``, ``send_command``
(including a crash, which comes back as an ``isError`` result), ``get_agent``
(the supervisor restarted it), ``replay_events``, ``system_health`` and
``stop_agent``. Then stops the node with SIGTERM.

Run it: ``python examples/http_jsonrpc.py``.
"""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


def start_node(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``mistersmith serve --json`` prints one line once the node is up: where it listens."""
    log = open(data_dir.parent / "serve.log", "w")  # noqa: SIM115 - the node's logs, kept out of our output
    proc = subprocess.Popen(
        [sys.executable, "-m", "mistersmith", "serve", "--data-dir", str(data_dir), "--http-port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"the node did not start:\n{(data_dir.parent / 'serve.log').read_text()}")
    return proc, json.loads(line)


class Mcp:
    """A JSON-RPC client for ``/mcp``: one POST per call, one JSON reply each."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url + "/mcp"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}
        # A W3C traceparent (a fresh trace per call here): on a node that traces, what the call causes
        # is recorded with its trace id (`mistersmith replay --trace ID`).
        traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        request = urllib.request.Request(self.url, json.dumps(body).encode(),
                                         {**self.headers, "traceparent": traceparent}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            session = response.headers.get("Mcp-Session-Id")
            reply = json.loads(response.read())
        if session:  # initialize opened a session: later requests carry it
            self.headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": reply["result"]["protocolVersion"]}
        if "error" in reply:
            raise RuntimeError(f"JSON-RPC error {reply['error']['code']}: {reply['error']['message']}")
        return reply["result"]

    def call(self, tool: str, **arguments: Any) -> tuple[bool, Any]:
        """``tools/call``: (ok, the structured result or the error object)."""
        result = self.rpc("tools/call", {"name": tool, "arguments": arguments})
        if result["isError"]:
            return False, json.loads(result["content"][0]["text"])["error"]
        return True, result["structuredContent"]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def drive(base_url: str) -> None:
    print("GET /health ->", get(base_url + "/health")["status"])
    print("GET /info   -> tools:", ", ".join(get(base_url + "/info")["tools"]))

    mcp = Mcp(base_url)
    hello = mcp.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "http-example", "version": "1.0"}})
    print("initialize  ->", hello["serverInfo"]["name"], hello["protocolVersion"])
    print("tools/list  ->", len(mcp.rpc("tools/list")["tools"]), "tools")

    print("spawn_agent ->", mcp.call("spawn_agent", kind="echo", agent_id="http-1")[1]["agent"]["state"])
    print("send echo   ->", mcp.call("send_command", agent_id="http-1", command="echo", payload={"via": "http"}))
    ok, error = mcp.call("send_command", agent_id="http-1", command="fail", payload={"message": "on purpose"})
    print("send fail   ->", "ok" if ok else f"isError: {error['code']}: {error['message']}")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the supervisor restarts it after a short backoff; wait for the journal
        if mcp.call("replay_events", agent_id="http-1", event_types=["restarted"])[1]["count"]:
            break
        time.sleep(0.05)
    ok, replay = mcp.call("replay_events", agent_id="http-1")
    print("replay      ->", [e["event_type"] for e in replay["events"]], f"(from the {replay['source']})")
    agent = mcp.call("get_agent", agent_id="http-1")[1]["agent"]
    print("get_agent   -> state", agent["state"], "restart_count", agent["restart_count"])
    print("health      ->", {k: v["status"] for k, v in mcp.call("system_health")[1]["components"].items()})
    print("stop_agent  ->", mcp.call("stop_agent", agent_id="http-1")[1])
    ok, error = mcp.call("get_agent", agent_id="http-1")
    print("get_agent   ->", error["code"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
        proc, node = start_node(Path(tmp) / "node")
        print(f"node {node['node_id']} is up at {node['http_url']}")
        try:
            drive(node["http_url"])
        finally:
            proc.send_signal(signal.SIGTERM)
            print("node exited with", proc.wait(60))


if __name__ == "__main__":
    main()
