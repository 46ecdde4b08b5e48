"""Least privilege on a whole node: the embedded NATS needs a password, clients cannot speak for
nodes, and no door runs a program the operator did not configure."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from _helpers import WAIT_S
from nats.errors import Error as NatsError

from mistersmith import EchoAgent
from mistersmith.config import ConfigError, load_settings
from mistersmith.kinds import served_kinds
from mistersmith.node import Node

SCRIPT = "import json,sys; print(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read()}))"
TOOL = {"command": [sys.executable, "-c", SCRIPT, "configured"], "overridable": ["prompt_template"]}


@pytest.fixture
def node(node_dir: Path) -> Iterator[Node]:
    settings = load_settings({"node.data_dir": str(node_dir), "http.port": 0, "process.kinds": {"tool": TOOL}})
    with Node(settings) as started:
        yield started


def _request(node: Node, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        nc = await nats.connect(**node.nats_client_options())
        try:
            msg = await nc.request(subject, json.dumps(body).encode(), timeout=WAIT_S)
            reply: dict[str, Any] = json.loads(msg.data)
            return reply
        finally:
            await nc.close()

    return asyncio.run(go())


def _mcp_call(node: Node, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    assert node.http is not None
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments}}).encode()
    req = urllib.request.Request(node.http.url + "/mcp", body, {"Content-Type": "application/json",
                                                                "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    result: dict[str, Any] = answer["result"]
    return result


def test_an_unauthenticated_connection_to_the_embedded_server_is_refused(node: Node) -> None:
    async def go() -> None:
        with pytest.raises(NatsError, match="[Aa]uthorization"):
            await nats.connect(node.nats_url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=5)
        with pytest.raises(NatsError, match="[Aa]uthorization"):
            await nats.connect(node.nats_url, user="mistersmith-client", password="guessed", allow_reconnect=False,
                               max_reconnect_attempts=1, connect_timeout=5)

    asyncio.run(go())


def test_the_credentials_are_files_only_the_node_user_reads(node: Node) -> None:
    assert node.nats_credentials is not None
    creds = Path(node.nats_credentials)
    for path in [creds, creds.with_name("node.json"), node.data_dir / "nats" / "nats-server.conf"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = json.loads(creds.read_text())["password"]
    assert password not in (node.data_dir / "node.json").read_text()
    assert password not in json.dumps(node.describe())


def test_a_client_cannot_publish_what_only_nodes_say(node: Node) -> None:
    async def go() -> None:
        errors: list[Exception] = []
        refused = asyncio.Event()

        async def on_error(exc: Exception) -> None:  # nats-py runs it in a task of its own, later
            errors.append(exc)
            if "permissions violation" in str(exc).lower():
                refused.set()

        watcher = await nats.connect(**node.nats_client_options())
        client = await nats.connect(**node.nats_client_options(), error_cb=on_error)
        assert node.nats_credentials is not None
        node_user = json.loads(Path(node.nats_credentials).with_name("node.json").read_text())
        as_node = await nats.connect(node.nats_url, user=node_user["user"], password=node_user["password"])
        try:
            sub = await watcher.subscribe("agents.forged.status.>")
            await watcher.flush()
            await client.publish("agents.forged.status.started", b'{"forged": true}')
            await client.flush()  # the server has read (and refused) the publish once the PONG is back
            await as_node.publish("agents.forged.status.started", b'{"genuine": true}')
            first = await sub.next_msg(timeout=WAIT_S)
            assert json.loads(first.data) == {"genuine": True}
            await asyncio.wait_for(refused.wait(), WAIT_S)  # the server said why, to the client
            assert any("permissions violation" in str(e).lower() for e in errors), errors
        finally:
            for nc in (client, watcher, as_node):
                await nc.close()

    asyncio.run(go())


def test_spawning_the_generic_process_kind_is_refused_over_nats_naming_the_setting(node: Node) -> None:
    reply = _request(node, "system.control.spawn", {"kind": "process", "config": {"command": ["sh", "-c", "id"]}})
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_spec", reply
    assert "node.allow_arbitrary_process" in reply["error"]["message"]
    assert node.runtime is not None and not [a for a in node.runtime.list_agents() if a["kind"] == "process"]


def test_spawning_the_generic_process_kind_is_refused_over_mcp_naming_the_setting(node: Node) -> None:
    result = _mcp_call(node, "spawn_agent", {"kind": "process", "config": {"command": ["sh", "-c", "id"]}})
    assert result["isError"] is True
    error = json.loads(result["content"][0]["text"])["error"]
    assert error["code"] == "invalid_spec" and "node.allow_arbitrary_process" in error["message"], result


def test_a_configured_process_kind_runs_its_configured_command_only(node: Node) -> None:
    spawned = _request(node, "system.control.spawn", {"kind": "tool", "agent_id": "tool-1",
                                                      "config": {"prompt_template": "Q: {prompt}"}})
    assert spawned["ok"] is True, spawned
    reply = _request(node, "agents.tool-1.commands.prompt", {"prompt": "hi"})
    assert reply["result"]["output"] == {"argv": ["configured"], "stdin": "Q: hi"}
    for config in ({"command": ["sh", "-c", "id"]}, {"env": {"LD_PRELOAD": "/tmp/evil.so"}}):
        refused = _request(node, "system.control.spawn", {"kind": "tool", "config": config})
        assert refused["ok"] is False and refused["error"]["code"] == "invalid_spec", refused
        assert "process.kinds.tool.overridable" in refused["error"]["message"]
    result = _mcp_call(node, "spawn_agent", {"kind": "tool", "config": {"command": ["sh", "-c", "id"]}})
    assert result["isError"] is True and "invalid_spec" in json.dumps(result)
    _request(node, "system.control.stop", {"agent_id": "tool-1"})


def test_system_control_kinds_lists_what_the_node_serves(node: Node) -> None:
    reply = _request(node, "system.control.kinds", {})
    assert reply["ok"] is True
    kinds = reply["result"]["kinds"]
    assert reply["result"]["node"] == node.node_id
    assert set(kinds) == {"echo", "tool"}
    assert kinds["tool"]["process"]["overridable"] == ["prompt_template"]
    assert kinds["tool"]["commands"]["prompt"]["params"] == {"prompt": {"required": True, "type": "str"}}
    assert "ping" in kinds["echo"]["commands"]
    bad = _request(node, "system.control.kinds", {"nope": 1})
    assert bad["ok"] is False and bad["error"]["code"] == "invalid_payload"


# -- which kinds a node serves (pure) ------------------------------------------------


def test_served_kinds_exclude_the_generic_process_kind_unless_allowed() -> None:
    assert set(served_kinds(load_settings({}), {})) == {"echo"}
    allowed = served_kinds(load_settings({"node.allow_arbitrary_process": True}), {})
    assert set(allowed) == {"echo", "process"}
    configured = served_kinds(load_settings({"process.kinds": {"tool": TOOL}}), {"mine": EchoAgent})
    assert set(configured) == {"echo", "tool", "mine"}


def test_node_kinds_is_the_exact_list_and_names_what_is_missing() -> None:
    only = served_kinds(load_settings({"process.kinds": {"tool": TOOL}, "node.kinds": "tool"}), {})
    assert set(only) == {"tool"}
    with pytest.raises(ConfigError, match="node.allow_arbitrary_process"):
        served_kinds(load_settings({"node.kinds": ["echo", "process"]}), {})
    with pytest.raises(ConfigError, match="name kinds this node has: echo"):
        served_kinds(load_settings({"node.kinds": ["nope"]}), {})


def test_a_bad_process_kind_in_the_config_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mistersmith.toml"
    path.write_text('[process.kinds.claude]\ncommand = ["claude", "-p"]\noverridable = ["command"]\n')
    with pytest.raises(ConfigError, match=r"process\.kinds\.claude\.overridable"):
        load_settings(config_file=path)
    path.write_text('[process.kinds.claude]\ncommand = ["claude", "-p"]\noverridable = ["prompt_template"]\n')
    kind = load_settings(config_file=path)["process.kinds"]["claude"]
    assert kind.command == ("claude", "-p")
