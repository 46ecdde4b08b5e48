"""The cluster's doors on two real nodes (one real nats-server, one real PostgreSQL): ``system.control.nodes``,
``GET /cluster``, the MCP tool ``list_nodes`` and ``mistersmith nodes --json`` all show both nodes up with
their agents; ``system.control.drain`` moves a node's agents to the other, and with ``exit`` asks the node
to stop once it has answered.

Nothing sleeps: a node reports its agent count at each lease renewal, so the tests ask again (each ask a
NATS round trip and a query) until the table says what they wait for, within ``WAIT_S``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from mistersmith.cli import EXIT_OK, main
from mistersmith.config import Settings, load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.node import Node

WAIT_S = 30.0
Rows = list[dict[str, Any]]


def _settings(data_dir: Path, node_id: str, nats_url: str, database_url: str, **more: Any) -> Settings:
    return load_settings({"node.data_dir": str(data_dir), "node.id": node_id, "http.port": 0, "nats.url": nats_url,
                          "database.url": database_url, "cluster.node_lease_s": 2.0, "cluster.heartbeat_s": 0.25,
                          "cluster.lease_margin_s": 0.5, **more})


async def _request(url: str, subject: str, body: dict[str, Any], timeout_s: float = WAIT_S) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        reply: dict[str, Any] = json.loads((await nc.request(subject, json.dumps(body).encode(),
                                                             timeout=timeout_s)).data)
        return reply
    finally:
        await nc.close()


def nodes_until(url: str, wanted: Callable[[Rows], bool]) -> Rows:
    """``system.control.nodes`` asked again until its rows satisfy ``wanted``; AssertionError after WAIT_S."""
    async def ask() -> Rows:
        nc = await nats.connect(url)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_S
            while True:
                reply = json.loads((await nc.request("system.control.nodes", b"{}", timeout=WAIT_S)).data)
                assert reply["ok"] is True, reply
                rows: Rows = reply["result"]["nodes"]
                if wanted(rows):
                    return rows
                if loop.time() > deadline:
                    raise AssertionError(f"system.control.nodes never showed what was wanted: {rows}")
        finally:
            await nc.close()

    return asyncio.run(ask())


def _counts(rows: Rows) -> dict[str, tuple[str, int, bool]]:
    return {r["node_id"]: (r["state"], r["agents"], r["expired"]) for r in rows}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=WAIT_S) as resp:
        return json.loads(resp.read())


def _mcp_tool(url: str, name: str) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                       "params": {"name": name, "arguments": {}}}).encode()
    req = urllib.request.Request(url + "/mcp", body, {"Content-Type": "application/json",
                                                      "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        result: dict[str, Any] = json.loads(resp.read())["result"]
    return result


@pytest.fixture
def two_nodes(tmp_path: Path, own_nats: EmbeddedNats, journal_db: str) -> Iterator[tuple[Node, Node]]:
    a = Node(_settings(tmp_path / "a", "node-a", own_nats.url, journal_db)).start()
    try:
        b = Node(_settings(tmp_path / "b", "node-b", own_nats.url, journal_db)).start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def test_every_door_lists_both_nodes_up_with_their_agents(
    two_nodes: tuple[Node, Node], own_nats: EmbeddedNats, capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = two_nodes
    assert a.runtime is not None and b.runtime is not None and a.http is not None and b.http is not None
    a.runtime.spawn("echo", "ea1")
    a.runtime.spawn("echo", "ea2")
    b.runtime.spawn("echo", "eb1")
    expected = {"node-a": ("up", 2, False), "node-b": ("up", 1, False)}

    rows = nodes_until(own_nats.url, lambda rows: _counts(rows) == expected)
    assert [r["node_id"] for r in rows] == ["node-a", "node-b"]
    assert {r["node_id"]: r["http_url"] for r in rows} == {"node-a": a.http.url, "node-b": b.http.url}

    # The other doors read the same shared table (the counts are settled: nothing spawns any more).
    cluster = _get(a.http.url + "/cluster")
    assert cluster["node_id"] == "node-a" and _counts(cluster["nodes"]) == expected
    tool = _mcp_tool(a.http.url, "list_nodes")
    assert tool["isError"] is False
    assert tool["structuredContent"]["node_id"] == "node-a" and _counts(tool["structuredContent"]["nodes"]) == expected

    capsys.readouterr()
    code = main(["nodes", "--json", "--nats-url", own_nats.url])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert _counts(json.loads(out)["nodes"]) == expected
    assert main(["nodes", "--nats-url", own_nats.url]) == EXIT_OK
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in table[2:4]] == [["node-a", "up", "2"], ["node-b", "up", "1"]]


def test_drain_moves_a_nodes_agents_and_with_exit_asks_it_to_stop(
    tmp_path: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    asked = threading.Event()
    a = Node(_settings(tmp_path / "a", "node-a", own_nats.url, journal_db)).start()
    try:
        b = Node(_settings(tmp_path / "b", "node-b", own_nats.url, journal_db, **{"nats.allow_remote_shutdown": True}),
                 on_shutdown_request=asked.set).start()
        try:
            assert a.runtime is not None and b.runtime is not None
            b.runtime.spawn("echo", "moving")
            nodes_until(own_nats.url, lambda rows: _counts(rows).get("node-b") == ("up", 1, False))

            reply = asyncio.run(_request(own_nats.url, "system.control.drain", {"node": "node-b", "exit": True}))
            assert reply["ok"] is True, reply
            report = reply["result"]
            assert report["node"] == "node-b" and report["exiting"] is True
            assert report["handed_over"] == ["moving"] and report["not_handed_over"] == []
            assert asked.wait(WAIT_S), "drained with exit: the node must ask to stop once it has answered"
            assert [x["id"] for x in a.runtime.list_agents()] == ["moving"], "it runs on node-a now"
            assert a.runtime.ask("moving", "echo", {"hi": 1}, timeout=WAIT_S) == {"hi": 1}
            nodes_until(own_nats.url, lambda rows: [r[:2] for r in _counts(rows).values()] == [("up", 1),
                                                                                               ("draining", 0)])
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_drain_under_load_fails_no_request_but_with_restarting_and_moves_every_agent(
    tmp_path: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    """50 agents on node-b, each asked in a loop; node-b drains: every request gets its answer or, while its
    agent moves, ``restarting`` (the caller retries); none gets another error, and all 50 end on node-a."""
    a = Node(_settings(tmp_path / "a", "node-a", own_nats.url, journal_db)).start()
    try:
        b = Node(_settings(tmp_path / "b", "node-b", own_nats.url, journal_db)).start()
        try:
            assert a.runtime is not None and b.runtime is not None
            ids = [f"load-{i:02d}" for i in range(50)]
            for agent_id in ids:
                b.runtime.spawn("echo", agent_id)
            nodes_until(own_nats.url, lambda rows: _counts(rows).get("node-b") == ("up", 50, False))

            async def run() -> tuple[dict[str, Any], dict[str, int], int]:
                nc = await nats.connect(own_nats.url)
                stop = asyncio.Event()
                outcomes: dict[str, int] = {}
                answered = 0

                async def hammer(agent_id: str) -> None:
                    nonlocal answered
                    n = 0
                    while not stop.is_set():
                        n += 1
                        try:
                            msg = await nc.request(f"agents.{agent_id}.commands.echo", json.dumps({"n": n}).encode(),
                                                   timeout=10)
                        except Exception as exc:  # no responders, a timeout: a failed request
                            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                            continue
                        reply = json.loads(msg.data)
                        if reply["ok"]:
                            assert reply["result"] == {"n": n}
                            answered += 1
                        else:
                            code = reply["error"]["code"]
                            outcomes[code] = outcomes.get(code, 0) + 1
                            if code == "restarting":
                                await asyncio.sleep(reply["error"].get("retry_after_s") or 0.05)

                workers = [asyncio.create_task(hammer(agent_id)) for agent_id in ids]
                try:
                    while answered < 200:  # the load runs before the drain starts
                        await asyncio.sleep(0.01)
                    drained = json.loads((await nc.request("system.control.drain", b'{"node": "node-b"}',
                                                           timeout=WAIT_S)).data)
                    before = answered
                    while answered < before + 200:  # and after it, against the agents where they run now
                        await asyncio.sleep(0.01)
                finally:
                    stop.set()
                    await asyncio.gather(*workers)
                    await nc.close()
                return drained, outcomes, answered

            drained, outcomes, answered = asyncio.run(run())
            assert drained["ok"] is True, drained
            assert drained["result"]["not_handed_over"] == [], drained["result"]["not_handed_over"][:3]
            assert sorted(drained["result"]["handed_over"]) == ids
            assert set(outcomes) <= {"restarting"}, outcomes
            assert sorted(x["id"] for x in a.runtime.list_agents()) == ids
            assert b.runtime.list_agents() == []
            print(f"answered {answered}, retried {outcomes.get('restarting', 0)}")
        finally:
            b.stop()
    finally:
        a.stop()


def test_the_nats_heartbeat_carries_the_facts_of_the_lease(two_nodes: tuple[Node, Node], own_nats: EmbeddedNats) -> None:
    a, _ = two_nodes
    assert a.cluster is not None

    async def heard() -> dict[str, Any]:
        nc = await nats.connect(own_nats.url)
        try:
            sub = await nc.subscribe("system.nodes.here")
            while True:
                said = json.loads((await sub.next_msg(timeout=WAIT_S)).data)
                if said["node"] == "node-a":
                    return said
        finally:
            await nc.close()

    said = asyncio.run(heard())
    assert said["state"] == "up" and said["run_id"] == a.cluster.lease.run_id
    assert {"agents", "max_agents", "http_url", "nats_url"} <= set(said)
