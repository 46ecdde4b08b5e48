"""The audit trail on a whole node (embedded NATS, real PostgreSQL): spawn, send and stop from MCP over
HTTP (scoped tokens), from NATS and from the CLI land in audit_log with the right actor, door and outcome;
`mistersmith audit` and the MCP tool audit_log read them back; a scope it lacks is refused on the node."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from mistersmith.cli import main
from mistersmith.config import load_settings
from mistersmith.node import Node
from mistersmith.tokens import mint

OPS_TOKEN, OPS = mint("ops", ["control", "command", "read"])
AUDITOR_TOKEN, AUDITOR = mint("auditor", ["admin"])


@dataclass
class _Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> _Ran:
    """``mistersmith ARGS`` in this process: its exit code and what it printed."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return _Ran(code, captured.out, captured.err)


def _tool(url: str, token: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                       "params": {"name": name, "arguments": arguments}}).encode()
    request = urllib.request.Request(url + "/mcp", body, {"Content-Type": "application/json",
                                                         "Accept": "application/json, text/event-stream",
                                                         "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())["result"]
    return result


def test_every_door_lands_in_the_audit_log(node_dir: Path, journal_db: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"node.data_dir": str(node_dir), "http.port": 0, "nats.embedded_port": 0,
                              "database.url": journal_db,
                              "auth.tokens": [OPS.to_table(), AUDITOR.to_table()]})
    with Node(settings) as node:
        assert node.http is not None and node.runtime is not None and node.audit is not None
        url = node.http.url
        assert not _tool(url, OPS_TOKEN, "spawn_agent", {"kind": "echo", "agent_id": "via-mcp"})["isError"]
        assert not _tool(url, OPS_TOKEN, "send_command", {"agent_id": "via-mcp", "command": "echo"})["isError"]
        refused = _tool(url, AUDITOR_TOKEN, "stop_agent", {"agent_id": "via-mcp"})
        assert refused["isError"] and json.loads(refused["content"][0]["text"])["error"]["scope"] == "control"

        async def over_nats() -> None:
            nc = await nats.connect(**node.nats_client_options())
            try:
                spawned = await nc.request("system.control.spawn", b'{"kind": "echo", "agent_id": "via-nats"}',
                                           timeout=10, headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
                assert json.loads(spawned.data)["ok"] is True
                echoed = await nc.request("agents.via-nats.commands.echo", b"{}", timeout=10)
                assert json.loads(echoed.data)["ok"] is True
                gone = await nc.request("system.control.stop", b'{"agent_id": "ghost"}', timeout=10)
                assert json.loads(gone.data)["error"]["code"] == "unknown_agent"  # no node acted: not recorded
            finally:
                await nc.close()

        asyncio.run(over_nats())
        assert cli(capsys, "stop", "via-nats", "--data-dir", str(node_dir)).code == 0
        node.runtime.stop("via-mcp")
        assert node.audit.flush(10.0)
        read = _tool(url, AUDITOR_TOKEN, "audit_log", {"limit": 1000})
        assert not read["isError"], read
        assert _tool(url, OPS_TOKEN, "audit_log", {})["isError"]  # admin only
        with pytest.raises(urllib.error.HTTPError) as forbidden:
            urllib.request.urlopen(urllib.request.Request(url + "/info", headers={
                "Authorization": f"Bearer {AUDITOR_TOKEN}"}), timeout=10)
        assert forbidden.value.code == 403

    seen = [(e["door"], e["actor"], e["action"], e["target"], e["outcome"])
            for e in read["structuredContent"]["entries"]]
    assert seen == [
        ("mcp", "ops", "spawn", "via-mcp", "ok"),
        ("mcp", "ops", "command", "via-mcp", "ok"),
        ("mcp", "auditor", "stop", "via-mcp", "forbidden"),
        ("nats", "nats", "spawn", "via-nats", "ok"),
        ("nats", "nats", "command", "via-nats", "ok"),
        ("cli", "nats", "stop", "via-nats", "ok"),
        ("library", "library", "stop", "via-mcp", "ok"),
    ]
    assert read["structuredContent"]["entries"][3]["trace_id"] == "ab" * 16
    # `mistersmith audit` reads the table itself (the database's credentials are its admin scope)
    listed = cli(capsys, "audit", "--json", "--database-url", journal_db, "--door", "nats", "--action", "spawn")
    assert listed.code == 0, listed.err
    assert [(e["target"], e["detail"]) for e in listed.json()["entries"]] == [("via-nats", "echo")]
    text = cli(capsys, "audit", "--database-url", journal_db, "--actor", "ops", "--since", "1h")
    assert text.code == 0 and "spawn" in text.out and "via-mcp (echo)" in text.out
