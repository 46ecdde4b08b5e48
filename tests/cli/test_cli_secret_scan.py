"""No secret leaks, whatever the door: a whole `mistersmith serve` scenario at debug log level, then
every log line, every file in the data dir, every HTTP response and every NATS message the node
sent is searched for the API token, the NATS passwords and agents' secret env values."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nats
import pytest
from _cli_helpers import WAIT_S, Served, call

TOKEN = "tok-" + secrets.token_hex(16)
SPAWNED_SECRET = "sk-spawned-" + secrets.token_hex(8)  # an env value a spawn request gives
KIND_SECRET = "sk-kind-" + secrets.token_hex(8)  # an env value the operator's config gives
# the program proves it got its env, without printing it
SCRIPT = ("import json,os,sys; sys.stdin.read(); "
          "print(json.dumps({k: len(v) for k, v in os.environ.items() if k.endswith('_KEY')}))")


def _http(url: str, method: str = "GET", body: Any = None, token: str | None = TOKEN) -> bytes:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def _mcp(base: str, name: str, arguments: dict[str, Any]) -> bytes:
    return _http(base + "/mcp", "POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                         "params": {"name": name, "arguments": arguments}})


async def _over_nats(ready: dict[str, Any]) -> list[bytes]:
    """Drive the node as a NATS client; every message the node sent (replies, status, announcements)."""
    creds = json.loads(Path(ready["nats_credentials"]).read_text())
    nc = await nats.connect(ready["nats_url"], user=creds["user"], password=creds["password"])
    seen: list[bytes] = []
    ours = ("system.control.", "agents.tool-1.commands.", "agents.proc-1.commands.")

    async def collect(msg: Any) -> None:
        if not msg.subject.startswith(ours):  # not our own requests, which carry the spawned secret
            seen.append(msg.subject.encode() + b" " + bytes(msg.data))

    try:
        await nc.subscribe(">", cb=collect)
        await nc.flush()

        async def ask(subject: str, body: dict[str, Any]) -> dict[str, Any]:
            reply = await nc.request(subject, json.dumps(body).encode(), timeout=WAIT_S)
            answer: dict[str, Any] = json.loads(reply.data)
            return answer

        assert (await ask("system.control.spawn", {"kind": "tool", "agent_id": "tool-1"}))["ok"]
        spawned = await ask("system.control.spawn", {"kind": "process", "agent_id": "proc-1", "config": {
            "command": [sys.executable, "-c", SCRIPT], "env": {"SPAWNED_KEY": SPAWNED_SECRET}}})
        assert spawned["ok"], spawned
        tool = await ask("agents.tool-1.commands.prompt", {"prompt": "hi"})
        assert tool["result"]["output"] == {"TOOL_KEY": len(KIND_SECRET)}  # it got the value
        proc = await ask("agents.proc-1.commands.prompt", {"prompt": "hi"})
        assert proc["result"]["output"] == {"SPAWNED_KEY": len(SPAWNED_SECRET)}
        got = await ask("system.control.get", {"agent_id": "proc-1"})
        assert got["result"]["config"]["env"] == {"SPAWNED_KEY": "***"}
        for action, body in (("list", {}), ("tree", {}), ("kinds", {}), ("ping", {}), ("get", {"agent_id": "tool-1"})):
            assert (await ask(f"system.control.{action}", body))["ok"]
        await ask("agents.proc-1.commands.fail", {})  # no such command: an error reply
        await nc.flush()
    finally:
        await nc.close()
    return seen


def test_no_secret_appears_in_logs_files_http_or_nats(node_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = node_dir / "mistersmith.toml"
    config.write_text(
        "[node]\nallow_arbitrary_process = true\n[logging]\nlevel = \"DEBUG\"\n"
        f"[process.kinds.tool]\ncommand = {json.dumps([sys.executable, '-c', SCRIPT])}\n"
        f"env = {{ TOOL_KEY = \"{KIND_SECRET}\" }}\n"
    )
    monkeypatch.setenv("MISTERSMITH_API_TOKEN", TOKEN)
    data_dir = node_dir / "node"
    shown: list[bytes] = []
    with Served(data_dir, "--config", str(config)) as served:
        ready = served.ready
        shown.append(json.dumps(ready).encode())
        shown += asyncio.run(_over_nats(ready))
        base = ready["http_url"]
        shown.append(_http(base + "/health", token=None))
        for route in ("/health", "/info", "/metrics", "/stats/nats", "/stats/discoveries"):
            shown.append(_http(base + route))
        shown.append(_http(base + "/mcp", "POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        shown.append(_mcp(base, "spawn_agent", {"kind": "process", "agent_id": "proc-2", "config": {
            "command": [sys.executable, "-c", SCRIPT], "env": {"OTHER_KEY": SPAWNED_SECRET}}}))
        for name, arguments in (("get_agent", {"agent_id": "proc-1"}), ("get_agent", {"agent_id": "proc-2"}),
                                ("list_agents", {}), ("supervision_tree", {}), ("system_health", {}),
                                ("replay_events", {}), ("send_command", {"agent_id": "proc-2", "command": "prompt",
                                                                        "payload": {"prompt": "x"}})):
            shown.append(_mcp(base, name, arguments))
        for args in (("config", "--config", str(config)), ("--data-dir", str(data_dir), "agents", "--json"),
                     ("--data-dir", str(data_dir), "health", "--json"), ("--data-dir", str(data_dir), "tree")):
            result = call(capsys, *args)
            shown.append((result.out + result.err).encode())
        replayed = call(capsys, "replay", "--data-dir", str(data_dir), "--json")
        assert replayed.code == 0 and "proc-1" in replayed.out
        shown.append(replayed.out.encode())
        creds = data_dir / "nats" / "credentials"
        passwords = [json.loads((creds / name).read_text())["password"] for name in ("node.json", "client.json")]
        assert served.stop() == 0
    logs = served.stderr()
    assert "DEBUG" in logs  # the scenario did run at debug level
    shown.append(logs.encode())
    holders = {creds / "node.json", creds / "client.json", data_dir / "nats" / "nats-server.conf"}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p not in holders):
        shown.append(str(path).encode() + b" " + path.read_bytes())
    needles = {"the API token": TOKEN, "a spawned env value": SPAWNED_SECRET, "a kind's env value": KIND_SECRET,
               "the node's NATS password": passwords[0], "the clients' NATS password": passwords[1]}
    leaks = [(what, blob[:120]) for blob in shown for what, needle in needles.items() if needle.encode() in blob]
    assert leaks == [], leaks
    assert len(shown) > 30  # everything above was collected
