"""A whole node on the embedded default: every way in works, restart recovers, one node per data dir."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import nats
import pytest

from _helpers import exits_within
from mistersmith import Backoff, ChildSpec
from mistersmith.config import load_settings
from mistersmith.journal import DATABASE_URL_ENV
from mistersmith.node import DataDirLockedError, Node, read_node_file


def _mcp(url: str, method: str, params: dict[str, object] | None = None) -> dict[str, object]:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1, "params": params or {}}).encode()
    req = urllib.request.Request(url + "/mcp", body, {"Content-Type": "application/json",
                                                      "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, object] = json.loads(resp.read())
    return answer


def test_node_serves_library_nats_http_and_recovers_after_restart(node_dir: Path) -> None:
    settings = load_settings({"node.data_dir": str(node_dir), "http.port": 0})
    with Node(settings) as node:
        assert node.runtime is not None and node.http is not None
        info = read_node_file(node_dir)
        assert info is not None and info["nats_url"] == node.nats_url and info["http_url"] == node.http.url
        node.runtime.spawn("echo", agent_id="lib-agent")
        node.runtime.spawn("echo", agent_id="tuned", backoff=Backoff(min_s=1.0, max_s=2.0, jitter=0.0),
                           stash_limit=5, command_timeout_s=7.0)

        async def over_nats() -> bytes:
            nc = await nats.connect(**node.nats_client_options())
            try:
                reply = await nc.request("system.control.spawn", b'{"kind": "echo", "agent_id": "nats-agent"}',
                                         timeout=10)
                assert json.loads(reply.data)["ok"] is True
                msg = await nc.request("agents.nats-agent.commands.echo", b'{"hi": 1}', timeout=10)
                return msg.data
            finally:
                await nc.close()

        assert json.loads(asyncio.run(over_nats())) == {"ok": True, "result": {"hi": 1}}
        called = _mcp(node.http.url, "tools/call", {"name": "send_command", "arguments": {
            "agent_id": "lib-agent", "command": "echo", "payload": {"via": "http"}}})
        result = called["result"]
        assert isinstance(result, dict) and result["isError"] is False
        assert result["structuredContent"]["result"] == {"via": "http"}
        node_id = node.node_id
        with pytest.raises(DataDirLockedError, match="already serving"):
            Node(load_settings({"node.data_dir": str(node_dir), "http.port": 0})).start()
    assert read_node_file(node_dir) is None

    with Node(load_settings({"node.data_dir": str(node_dir), "http.port": 0})) as again:
        assert again.node_id == node_id
        assert again.runtime is not None
        hosted = {a["id"] for a in again.runtime.list_agents()}
        assert {"lib-agent", "nats-agent"} <= hosted
        assert again.runtime.ask("nats-agent", "ping", timeout=10)["pong"] is True
        tuned = again.runtime.system.agents["tuned"].spec
        assert isinstance(tuned, ChildSpec)
        assert (tuned.backoff, tuned.stash_limit, tuned.command_timeout_s) == (
            Backoff(min_s=1.0, max_s=2.0, jitter=0.0), 5, 7.0)
        recovered = again.runtime.history(event_types=["recovered"])
        assert {e.agent_id for e in recovered} >= {"lib-agent", "nats-agent"}


def test_with_no_database_url_the_node_starts_the_embedded_postgresql_and_stops_it(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with Node(load_settings({"node.data_dir": str(node_dir), "http.port": 0})) as node:
        assert node.postgres is not None and node.journal is not None and node.runtime is not None
        pid = node.postgres.pid
        assert pid is not None
        assert node.journal.conninfo == node.postgres.conninfo(), "the journal writes to the node's server"
        assert node.postgres.data_dir == node_dir / "postgres"
        info = read_node_file(node_dir)
        assert info is not None and info["database"] == "embedded"
        assert node.describe()["database"] == "embedded PostgreSQL in the data directory"
        node.runtime.spawn("echo", agent_id="a1")
        assert node.journal.flush(10)
        assert "a1" in {e.agent_id for e in node.journal.replay(event_types=["started"])}
    assert exits_within(pid, 10), "the embedded server stops with the node"


def test_health_says_degraded_with_the_reason_when_the_spool_cannot_write(tmp_path: Path) -> None:
    class Journal:  # what /health reads of the journal: its stats
        def __init__(self, error: str | None) -> None:
            self.error = error

        def stats(self) -> dict[str, object]:
            return {"writer": {"pg_connected": True}, "spool": {"backlog_events": 3, "last_error": self.error}}

    node = Node(load_settings({"node.data_dir": str(tmp_path / "n")}))
    node.journal = Journal(None)  # type: ignore[assignment]
    assert asyncio.run(node._database_health())["status"] == "ok"
    node.journal = Journal("OSError(28, 'No space left on device')")  # type: ignore[assignment]
    health = asyncio.run(node._database_health())
    assert health["status"] == "degraded" and "No space left" in str(health["spool_error"])
