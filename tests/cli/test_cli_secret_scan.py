"""No secret leaks, whatever the door: a whole `mistersmith serve` scenario at debug log level, then
every log line, every file in the data dir, every HTTP response, every NATS message the node sent,
every CLI output (`config --json` too) and every error message (a wrong token, a scoped NATS
user's refused publish, a database URL and a NATS URL that fail) is searched for the API token, a
scoped [[auth.tokens]] token, a wrong token, the NATS passwords (the node's, the clients', an
[[auth.nats_users]] user's, one in a URL), a database password and agents' secret env values."""

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
from _cli_helpers import WAIT_S, Served, call, run_cli

from mistersmith.tokens import mint, mint_nats_user

TOKEN = "tok-" + secrets.token_hex(16)
SCOPED, SCOPED_ENTRY = mint("ops", ["read", "command", "control"])  # an [[auth.tokens]] entry's token
WRONG = "wrong-" + secrets.token_hex(16)  # a token nobody has: refused, and never echoed
NATS_USER = mint_nats_user("reader", ["read"])  # an [[auth.nats_users]] entry
DB_PASSWORD = "db-pass-" + secrets.token_hex(8)
BAD_DB = f"postgresql://ms:{DB_PASSWORD}@127.0.0.1:1/ms"  # nothing listens on port 1: it fails
URL_PASSWORD = "url-pass-" + secrets.token_hex(8)
BAD_NATS = f"nats://ms:{URL_PASSWORD}@127.0.0.1:1"
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


def _mcp(base: str, name: str, arguments: dict[str, Any], token: str | None = TOKEN) -> bytes:
    return _http(base + "/mcp", "POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                         "params": {"name": name, "arguments": arguments}}, token=token)


async def _as_scoped_nats_user(ready: dict[str, Any]) -> list[bytes]:
    """A read-only [[auth.nats_users]] user: a read, and a spawn the server refuses (its error, kept)."""
    errors: list[bytes] = []

    async def collect(exc: Exception) -> None:
        errors.append(str(exc).encode())

    nc = await nats.connect(ready["nats_url"], user=NATS_USER.name, password=NATS_USER.password,
                            inbox_prefix=NATS_USER.inbox_prefix, error_cb=collect, allow_reconnect=False)
    try:
        listed = await nc.request("system.control.list", b"{}", timeout=WAIT_S)
        await nc.publish("system.control.spawn", b'{"kind": "echo"}')  # not its scope: a Permissions Violation
        await nc.flush()
        await nc.request("system.control.ping", b"{}", timeout=WAIT_S)  # the violation has been reported by now
    finally:
        await nc.close()
    assert any(b"permissions violation" in e.lower() for e in errors), errors
    return [bytes(listed.data), *errors]


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
        f"[[auth.tokens]]\nname = \"ops\"\ntoken_sha256 = \"{SCOPED_ENTRY.token_sha256}\"\n"
        "scopes = [\"read\", \"command\", \"control\"]\n"
        f"[[auth.nats_users]]\nname = \"{NATS_USER.name}\"\npassword = \"{NATS_USER.password}\"\n"
        "scopes = [\"read\"]\n"
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
        shown += asyncio.run(_as_scoped_nats_user(ready))
        base = ready["http_url"]
        for token in (SCOPED, WRONG):  # a scoped token's requests, and a wrong token's refusals
            shown += [_http(base + "/info", token=token), _http(base + "/health", token=token),
                      _mcp(base, "list_agents", {}, token=token),
                      _mcp(base, "spawn_agent", {"kind": "echo", "agent_id": f"by-{token[:4]}"}, token=token)]
        shown.append(_mcp(base, "shutdown", {}, token=SCOPED))  # not its scope: 403 / forbidden
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
        failing = (("replay", "--database-url", BAD_DB, "--json"), ("audit", "--database-url", BAD_DB),
                   ("agents", "--nats-url", BAD_NATS), ("--nats-url", BAD_NATS, "agents"),  # exit 3, a usage error
                   ("config", "--config", str(config), "--json"),
                   ("config", "--config", str(config), "--database-url", BAD_DB, "--nats-url", BAD_NATS, "--json"))
        for args in failing:
            result = call(capsys, *args)
            assert result.code == (0 if args[0] == "config" else 2 if args[0] == "--nats-url" else 3), result
            shown.append((result.out + result.err).encode())
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
    # a node that cannot start: a database URL that fails (the NATS URL's password must not show either)
    refused = run_cli("serve", "--data-dir", str(node_dir / "refused"), "--http-port", "0", "--log-level", "debug",
                      "--database-url", BAD_DB, "--nats-url", BAD_NATS)
    assert refused.returncode != 0 and "127.0.0.1:1" in refused.stderr, refused.stderr
    shown.append((refused.stdout + refused.stderr).encode())
    holders = {creds / "node.json", creds / "client.json", data_dir / "nats" / "nats-server.conf"}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p not in holders):
        shown.append(str(path).encode() + b" " + path.read_bytes())
    needles = {"the API token": TOKEN, "a spawned env value": SPAWNED_SECRET, "a kind's env value": KIND_SECRET,
               "the node's NATS password": passwords[0], "the clients' NATS password": passwords[1],
               "a scoped token": SCOPED, "a wrong token": WRONG, "a scoped NATS user's password": NATS_USER.password,
               "a database password": DB_PASSWORD, "a NATS URL's password": URL_PASSWORD}
    leaks = [(what, blob[:120]) for blob in shown for what, needle in needles.items() if needle.encode() in blob]
    assert leaks == [], leaks
    assert len(shown) > 30  # everything above was collected
