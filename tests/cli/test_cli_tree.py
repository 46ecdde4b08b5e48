"""`mistersmith tree` draws the live trees from `system.control.tree`: supervisors with their strategy
and intensity, children in start order, and the nodes that did not answer.

The node runs in this process (a Runtime and its Bridge on a real nats-server) so the test can
give it a nested supervisor, which `serve` has no flag for; the command reaches it with --nats-url.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import call

from mistersmith import Runtime, SupervisorSpec
from mistersmith.bridge import Bridge, BridgeOptions, ConnectOptions, connect
from mistersmith.cli import EXIT_OK
from mistersmith.crossing import LoopThread
from mistersmith.embedded.nats import EmbeddedNats

WAIT_S = 10.0


class _Node:
    """A Runtime with a Bridge on ``url``; ``close()`` stops both."""

    def __init__(self, url: str, node_id: str) -> None:
        self.rt = Runtime(node_id=node_id)
        self.loop = LoopThread(name=f"mistersmith-loop-{node_id}")
        self.nc: Any = None
        self.bridge: Bridge | None = None
        try:
            self.nc, stats = self.loop.run(connect(ConnectOptions(servers=(url,), name=node_id)), WAIT_S)
            self.bridge = Bridge(self.rt, self.nc, options=BridgeOptions(gather_timeout_s=0.5),
                                 connection_stats=stats)
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
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def ms(nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """``ms("tree")``: the command against ``nats_url``, in this process."""
    return lambda *args: call(capsys, *args, "--nats-url", nats_url, "--data-dir", str(tmp_path / "data"))


def test_tree_shows_a_supervisor_with_its_strategy_and_its_children(nats_url: str, ms: Any) -> None:
    node = _Node(nats_url, "node-cli-tree")
    try:
        path = node.rt.add_supervisor(SupervisorSpec("workers", strategy="rest_for_one", intensity=4, period_s=30))
        node.rt.spawn("echo", "w1", supervisor=path)
        node.rt.spawn("echo", "solo")

        root = node.rt.tree()
        shown = ms("tree")
        assert shown.code == EXIT_OK, shown.err
        assert shown.out.splitlines() == [
            "node node-cli-tree",
            f"root  supervisor ({root['strategy']}, intensity {root['intensity']}/{root['period_s']:g}s)"
            f"  {root['state']}",
            f"├── workers  supervisor (rest_for_one, intensity 4/30s)  {root['children'][0]['state']}",
            "│   └── w1  echo  idle",
            "└── solo  echo  idle",
        ], shown.out

        doc = ms("tree", "--json").json()
        assert doc["nodes"] == ["node-cli-tree"] and doc["missing"] == []
        workers = doc["trees"]["node-cli-tree"]["children"][0]
        assert (workers["id"], workers["type"], workers["strategy"], workers["intensity"]) == (
            "workers", "supervisor", "rest_for_one", 4)
        assert [c["id"] for c in workers["children"]] == ["w1"]

        absent = ms("tree", "--node", "node-zz")
        assert absent.code == EXIT_OK, absent.err
        assert absent.out.strip() == "no answer from: node-zz"
        assert ms("tree", "--node", "node-zz", "--json").json() == {"trees": {}, "nodes": [], "missing": ["node-zz"]}
    finally:
        node.close()
