"""``mistersmith nodes``, ``drain`` and ``rebalance`` against a bridge with a fake ClusterOps (one real
nats-server, the command in-process), and the ``nodes`` table itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import call
from _fake_cluster import FakeCluster, node_row

from mistersmith import Runtime
from mistersmith.bridge import Bridge, ConnectOptions, connect
from mistersmith.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from mistersmith.cli._cluster import nodes_text
from mistersmith.crossing import LoopThread
from mistersmith.embedded.nats import EmbeddedNats

WAIT_S = 30.0
ROWS = [node_row("node-a", agents=12), node_row("node-b", state="draining"),
        node_row("node-c", state="down", http_url=None), node_row("node-d", expired=True)]


class Kept(FakeCluster):
    """A drain that could not move one agent."""

    async def drain(self, *, exit: bool) -> dict[str, Any]:
        report = await super().drain(exit=exit)
        return {**report, "not_handed_over": [{"id": "p1", "reason": "kind 'greeter' is not served elsewhere"}]}


class BridgeOnly:
    """A Runtime and a Bridge (no journal, no HTTP) on the test's nats-server, with a fake cluster."""

    def __init__(self, url: str, node_id: str, cluster: FakeCluster) -> None:
        self.loop = LoopThread(f"mistersmith-loop-{node_id}")
        self.rt = Runtime(node_id=node_id)
        self.nc: Any = None
        self.bridge: Bridge | None = None
        try:
            self.nc, _ = self.loop.run(connect(ConnectOptions(servers=(url,), name=node_id)), WAIT_S)
            self.bridge = Bridge(self.rt, self.nc, cluster=cluster)
            self.loop.run(self.bridge.start(), WAIT_S)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            if self.bridge is not None:
                self.loop.run(self.bridge.close(), WAIT_S)
            if self.nc is not None:
                self.loop.run(self.nc.close(), WAIT_S)
        finally:
            self.rt.close()
            self.loop.stop()


@pytest.fixture
def fakes() -> dict[str, FakeCluster]:
    return {"node-a": FakeCluster("node-a", ROWS), "node-b": Kept("node-b", ROWS)}


@pytest.fixture
def bus(own_nats: EmbeddedNats, fakes: dict[str, FakeCluster]) -> Iterator[str]:
    nodes: list[BridgeOnly] = []
    try:
        for node_id, fake in fakes.items():
            nodes.append(BridgeOnly(own_nats.url, node_id, fake))
        yield own_nats.url
    finally:
        for node in reversed(nodes):
            node.close()


def test_nodes_table_times_are_relative_to_now() -> None:
    text = nodes_text({"nodes": ROWS}, now=datetime.fromisoformat("2026-11-24T09:44:52.000+00:00"))
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "STATE", "AGENTS", "MAX", "LAST", "SEEN", "LEASE", "EXPIRES", "IN", "HTTP",
                                "URL"]
    assert lines[2].split() == ["node-a", "up", "12", "10000", "1.5s", "ago", "3.5s", "http://127.0.0.1:8080"]
    assert lines[3].split() == ["node-b", "draining", "0", "10000", "1.5s", "ago", "3.5s", "http://127.0.0.1:8080"]
    assert lines[4].split() == ["node-c", "down", "0", "10000", "1.5s", "ago", "-", "-"]
    assert lines[5].split() == ["node-d", "up", "0", "10000", "1.5s", "ago", "expired", "http://127.0.0.1:8080"]
    assert lines[-1] == "4 node(s), 1 up"
    later = nodes_text({"nodes": ROWS[:1]}, now=datetime.fromisoformat("2026-11-24T12:44:52+00:00"))
    assert later.splitlines()[2].split()[4:7] == ["3h", "ago", "0.0s"]


def test_nodes_prints_the_table_or_the_reply(bus: str, capsys: pytest.CaptureFixture[str]) -> None:
    as_json = call(capsys, "nodes", "--nats-url", bus, "--json")
    assert as_json.code == EXIT_OK and as_json.json() == {"nodes": ROWS}
    human = call(capsys, "nodes", "--nats-url", bus)
    assert human.code == EXIT_OK and human.out.splitlines()[0].startswith("NODE")
    assert "4 node(s), 1 up" in human.out


def test_drain_a_named_node(bus: str, fakes: dict[str, FakeCluster], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "drain", "node-a", "--nats-url", bus, "--json")
    assert done.code == EXIT_OK
    assert done.json() == {"node": "node-a", "handed_over": ["a1", "a2"], "not_handed_over": [], "exiting": False}
    assert fakes["node-a"].drains == [False]
    human = call(capsys, "drain", "node-a", "--nats-url", bus)
    assert human.out == "node node-a drained: 2 agent(s) handed over (a1, a2)\n"


def test_drain_exits_1_when_an_agent_stayed(bus: str, capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "drain", "node-b", "--nats-url", bus)
    assert done.code == EXIT_FAILED
    assert "  not handed over: p1 (kind 'greeter' is not served elsewhere)" in done.out


def test_drain_exit_is_refused_by_a_node_that_forbids_remote_shutdown(
    bus: str, fakes: dict[str, FakeCluster], capsys: pytest.CaptureFixture[str],
) -> None:
    done = call(capsys, "drain", "node-a", "--exit", "--nats-url", bus)
    assert done.code == EXIT_FAILED and "unauthorized" in done.err and "--allow-remote-shutdown" in done.err
    assert fakes["node-a"].drains == []


def test_drain_finds_its_node_in_the_data_directory_or_says_to_name_it(
    bus: str, tmp_path: Path, fakes: dict[str, FakeCluster], capsys: pytest.CaptureFixture[str],
) -> None:
    nameless = call(capsys, "--data-dir", str(tmp_path), "drain", "--nats-url", bus)
    assert nameless.code == EXIT_USAGE and "drain: name the node" in nameless.err
    (tmp_path / "node.json").write_text(json.dumps({"node_id": "node-a", "pid": 1}))
    done = call(capsys, "--data-dir", str(tmp_path), "drain", "--nats-url", bus, "--json")
    assert done.code == EXIT_OK and done.json()["node"] == "node-a"
    unknown = call(capsys, "drain", "node-z", "--nats-url", bus)
    assert unknown.code == EXIT_UNREACHABLE and "no node 'node-z' answers" in unknown.err
    assert fakes["node-a"].drains == [False]


def test_rebalance_named_or_anywhere(bus: str, fakes: dict[str, FakeCluster], capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    named = call(capsys, "rebalance", "node-b", "--nats-url", bus)
    assert named.code == EXIT_OK and named.out == "node node-b: moved 1 agent(s) (a3); target 2\n"
    anywhere = call(capsys, "--data-dir", str(tmp_path), "rebalance", "--nats-url", bus, "--json")
    assert anywhere.code == EXIT_OK and anywhere.json()["node"] in ("node-a", "node-b")
    assert fakes["node-a"].rebalances + fakes["node-b"].rebalances == 2
