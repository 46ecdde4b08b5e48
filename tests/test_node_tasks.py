"""A whole node serves its task queue, through public doors only (MCP over HTTP, raw nats-py).

The streams exist once the node has started; a task submitted over MCP or published on
JetStream runs on an agent of the node's pool (``task-{kind}-...`` under ``root/tasks``); its
result arrives on ``tasks.{task_id}.result`` and through ``get_task``; a kind no node serves is
refused; no more than ``tasks.concurrency`` tasks of a kind run at once. Every wait is on a
message or a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from mistersmith import Agent, command
from mistersmith.bridge import JetStreamUnavailableError
from mistersmith.config import load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.node import Node, read_node_file

WAIT_S = 15.0

_inside = 0
_peak = 0
_seen = threading.Condition()
_gate = threading.Event()


class Gated(Agent):
    """``run`` waits at the gate; the test sees how many wait at once."""

    kind = "gated"

    @command("run")
    def run(self, n: int) -> dict[str, Any]:
        global _inside, _peak
        with _seen:
            _inside += 1
            _peak = max(_peak, _inside)
            _seen.notify_all()
        try:
            if not _gate.wait(WAIT_S):
                raise RuntimeError("the gate was never opened")
            return {"n": n}
        finally:
            with _seen:
                _inside -= 1


def _node(node_dir: Path, **settings: Any) -> Node:
    return Node(load_settings({"node.data_dir": str(node_dir), "http.port": 0, **settings}),
                kinds={"gated": Gated})


def _call(node: Node, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One MCP ``tools/call`` over HTTP; the tool's result (``isError``, ``structuredContent``...)."""
    assert node.http is not None
    body = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                       "params": {"name": tool, "arguments": arguments}}).encode()
    req = urllib.request.Request(node.http.url + "/mcp", body, {"Content-Type": "application/json",
                                                                "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        result: dict[str, Any] = json.loads(resp.read())["result"]
    return result


def _ok(node: Node, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = _call(node, tool, arguments)
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def _inbox(nc: nats.NATS, subject: str) -> asyncio.Queue[Msg]:
    queue: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe(subject, cb=queue.put)
    await nc.flush()
    return queue


async def _next(queue: asyncio.Queue[Msg]) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((await asyncio.wait_for(queue.get(), WAIT_S)).data)
    return data


def test_the_task_streams_and_each_kinds_consumers_exist_right_after_start(node_dir: Path) -> None:
    with _node(node_dir) as node:

        async def look() -> tuple[list[str], list[str]]:
            nc = await nats.connect(**node.nats_client_options())
            try:
                js = nc.jetstream()
                streams = [(await js.stream_info(name)).config.name or "" for name in ("MS_TASKS", "MS_TASKS_DEAD")]
                consumers = sorted(c.name for c in await js.consumers_info("MS_TASKS"))
                return streams, consumers
            finally:
                await nc.close()

        streams, consumers = asyncio.run(look())
        assert streams == ["MS_TASKS", "MS_TASKS_DEAD"]
        assert consumers == [f"tasks-{kind}-{p}" for kind in ("echo", "gated") for p in ("high", "low", "normal")]
        assert node.runtime is not None and node.runtime.list_agents() == [], "pool agents come with tasks"


def test_tasks_from_mcp_and_from_jetstream_run_on_pool_agents_and_get_task_has_their_results(
        node_dir: Path) -> None:
    with _node(node_dir) as node:

        async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            nc = await nats.connect(**node.nats_client_options())
            try:
                results = await _inbox(nc, "tasks.*.result")
                # A plain JetStream publish, the node's first task: the stream is there already.
                task = {"task_id": "raw-1", "command": "echo", "payload": {"via": "nats"}}
                ack = await nc.jetstream().publish("tasks.echo.queue.normal", orjson.dumps(task),
                                                   headers={"Nats-Msg-Id": "raw-1"})
                assert ack.stream == "MS_TASKS"
                raw = await _next(results)
                submitted = await asyncio.to_thread(_ok, node, "submit_task", {
                    "task_type": "echo", "command": "echo", "payload": {"via": "mcp"}, "timeout_s": 10})
                assert submitted["task"]["status"] == "queued"
                over_mcp = await _next(results)
                assert over_mcp["task_id"] == submitted["task"]["task_id"]
                tree = await asyncio.to_thread(_ok, node, "supervision_tree", {})
                return raw, over_mcp, tree
            finally:
                await nc.close()

        raw, over_mcp, tree = asyncio.run(scenario())
        assert raw["task_id"] == "raw-1" and raw["ok"] is True and raw["result"] == {"via": "nats"}
        assert over_mcp["result"] == {"via": "mcp"}
        for done in (raw, over_mcp):
            assert done["node"] == node.node_id and done["agent_id"].startswith("task-echo-")
            # the result is published once the record says done: get_task has it already
            task = _ok(node, "get_task", {"task_id": done["task_id"]})["task"]
            assert task["status"] == "done" and task["result"] == done["result"]
            assert task["agent_id"] == done["agent_id"] and task["node"] == node.node_id
        pool = next(c for c in tree["tree"]["children"] if c["id"] == "tasks")
        assert pool["type"] == "supervisor"
        assert {raw["agent_id"], over_mcp["agent_id"]} <= {c["id"] for c in pool["children"]}
        assert {c["restart"] for c in pool["children"]} == {"temporary"}


def test_a_kind_no_node_serves_is_refused_naming_the_kinds_served(node_dir: Path) -> None:
    with _node(node_dir) as node:
        result = _call(node, "submit_task", {"task_type": "ehco", "payload": {}})
        assert result["isError"] is True
        error = orjson.loads(result["content"][0]["text"])["error"]
        assert error["code"] == "invalid_spec"
        assert "'ehco'" in error["message"] and "kinds served: echo, gated" in error["message"]


def test_no_more_than_tasks_concurrency_tasks_of_a_kind_run_at_once(node_dir: Path) -> None:
    global _peak
    _gate.clear()
    _peak = 0
    with _node(node_dir, **{"tasks.concurrency": 2}) as node:
        try:
            ids = [_ok(node, "submit_task", {"task_type": "gated", "payload": {"n": n}})["task"]["task_id"]
                   for n in range(4)]
            with _seen:
                assert _seen.wait_for(lambda: _inside == 2, WAIT_S)
            # Two run; the worker holds no more than two, so the other two are still in the stream.
            statuses = sorted(_ok(node, "get_task", {"task_id": t})["task"]["status"] for t in ids)
            assert statuses == ["queued", "queued", "running", "running"]
        finally:
            _gate.set()

        async def all_done() -> list[dict[str, Any]]:
            nc = await nats.connect(**node.nats_client_options())
            try:
                progress = await _inbox(nc, "tasks.*.progress")
                pending = {t for t in ids if _ok(node, "get_task", {"task_id": t})["task"]["status"] != "done"}
                while pending:
                    seen = await _next(progress)
                    if seen["status"] == "done":
                        pending.discard(seen["task_id"])
                return [_ok(node, "get_task", {"task_id": t})["task"] for t in ids]
            finally:
                await nc.close()

        tasks = asyncio.run(all_done())
        assert [t["status"] for t in tasks] == ["done"] * 4 and sorted(t["result"]["n"] for t in tasks) == [0, 1, 2, 3]
        assert _peak == 2
        assert len({t["agent_id"] for t in tasks}) == 2, "two pool agents, each one task at a time, kept"


def test_a_node_on_a_nats_without_jetstream_stops_at_start_saying_why(node_dir: Path, tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats", jetstream=False) as server:
        node = _node(node_dir, **{"nats.url": server.url})
        with pytest.raises(JetStreamUnavailableError, match="needs JetStream; enable it"):
            node.start()
        assert node.runtime is not None and node.runtime.closed
        assert read_node_file(node_dir) is None
