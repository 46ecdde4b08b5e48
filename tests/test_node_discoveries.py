"""A whole node: discoveries and task states reach PostgreSQL, NATS and SSE, and survive a restart.

Real embedded nats-server and PostgreSQL; no mocks, no sleeps to synchronise
(every wait is on a condition, with a deadline).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

from mistersmith.actors import Agent, command
from mistersmith.config import load_settings
from mistersmith.node import Node

WAIT_S = 15.0


class Worker(Agent):
    """A task kind: ``run`` answers with its payload doubled."""

    kind = "worker"

    @command("run")
    def run(self, n: int = 0) -> dict[str, Any]:
        return {"doubled": 2 * n}


def _settings(data_dir: Path) -> Any:
    return load_settings({"node.data_dir": str(data_dir), "http.port": 0})


def _mcp_call(url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                       "params": {"name": tool, "arguments": arguments}}).encode()
    req = urllib.request.Request(url + "/mcp", body, {"Content-Type": "application/json",
                                                      "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    result = answer["result"]
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def _share(url: str, agent_id: str, content: str, discovery_type: str = "insight") -> dict[str, Any]:
    found: dict[str, Any] = _mcp_call(url, "share_discovery", {
        "agent_id": agent_id, "agent_role": "tester", "discovery_type": discovery_type,
        "content": content, "confidence": 0.9})["discovery"]
    return found


def _rows(conninfo: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline, not synchronising on time


class Sse:
    """A minimal SSE reader (Hypercorn sends chunked frames)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buffer = reader, writer, ""

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None) -> Sse:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = ["GET /discoveries/stream HTTP/1.1", f"host: {host}:{port}", "accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.split()[1] == b"200", head
        sse = cls(reader, writer)
        assert await sse._line() == ": connected"  # the stream is registered with the hub
        return sse

    async def _line(self) -> str:
        while True:
            line, sep, rest = self.buffer.partition("\n")
            if sep:
                self.buffer = rest
                return line
            size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                raise EOFError("the server ended the stream")
            self.buffer += (await self.reader.readexactly(size + 2))[:-2].decode()

    async def event(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            fields: dict[str, str] = {}
            while True:
                line = await self._line()
                if line == "" and "data" in fields:
                    data: dict[str, Any] = json.loads(fields["data"])
                    assert int(fields["id"]) == data["seq"]
                    return data
                if line and not line.startswith(":"):
                    key, _, value = line.partition(":")
                    fields[key] = value.removeprefix(" ")
        return await asyncio.wait_for(read(), WAIT_S)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def test_discoveries_are_stored_published_streamed_ingested_and_resumed(node_dir: Path) -> None:
    with Node(_settings(node_dir)) as node:
        assert node.http is not None and node.journal is not None
        url, conninfo = node.http.url, node.journal.conninfo

        async def first_run() -> list[dict[str, Any]]:
            nc = await nats.connect(**node.nats_client_options())
            sse = await Sse.open(url)
            try:
                sub = await nc.subscribe("discoveries.*.*")
                await nc.flush()
                shared = await asyncio.to_thread(_share, url, "scout-1", "the cache is cold on Mondays")
                assert shared["seq"] >= 1
                on_nats = await sub.next_msg(timeout=WAIT_S)
                assert on_nats.subject == "discoveries.scout-1.insight"
                assert json.loads(on_nats.data)["id"] == shared["id"]
                assert await sse.event() == shared

                # Published by any NATS client, not through the node: ingested the same way.
                external = {"id": "ext-0001", "agent_id": "outsider", "agent_role": "probe",
                            "discovery_type": "anomaly", "content": "latency spike", "confidence": 0.5}
                await nc.publish("discoveries.outsider.anomaly", json.dumps(external).encode())
                # Bad input on the same subjects is counted, never fatal.
                await nc.publish("discoveries.outsider.anomaly", b"not json")
                await nc.publish("discoveries.outsider.insight", json.dumps(external).encode())  # wrong subject
                await nc.flush()
                ingested = await sse.event()
                assert ingested["id"] == "ext-0001" and ingested["seq"] > shared["seq"]
                # Our own discovery came back over NATS and was not stored twice.
                return [shared, ingested]
            finally:
                await sse.close()
                await nc.close()

        seen = asyncio.run(first_run())
        rows = _rows(conninfo, "SELECT seq, id, agent_id, discovery_type, node_id FROM discoveries ORDER BY seq")
        assert rows == [(seen[0]["seq"], seen[0]["id"], "scout-1", "insight", node.node_id),
                        (seen[1]["seq"], "ext-0001", "outsider", "anomaly", node.node_id)]
        assert node.bridge is not None
        _wait_for("the two bad messages counted", lambda: node.bridge is not None
                  and node.bridge.counters.get("discoveries_invalid") == 2)
        # Shared while no stream was open: the resuming client must get these.
        missed = [_share(url, "scout-2", f"finding {i}", "pattern") for i in range(3)]

    last_seen = seen[-1]["seq"]
    with Node(_settings(node_dir)) as again:
        assert again.http is not None and again.journal is not None
        url = again.http.url

        async def resume() -> list[dict[str, Any]]:
            sse = await Sse.open(url, {"Last-Event-ID": str(last_seen)})
            try:
                got = [await sse.event() for _ in missed]
                live = await asyncio.to_thread(_share, url, "scout-3", "after the restart")
                got.append(await sse.event())
                assert got[-1]["id"] == live["id"]
                return got
            finally:
                await sse.close()

        got = asyncio.run(resume())
        assert [d["id"] for d in got[:3]] == [d["id"] for d in missed]
        seqs = [d["seq"] for d in got]
        assert seqs == sorted(seqs) and seqs[0] > last_seen
        stored = _rows(again.journal.conninfo, "SELECT seq FROM discoveries WHERE seq > %s ORDER BY seq", last_seen)
        assert [r[0] for r in stored] == seqs  # no gap: every stored one, in order


def test_task_state_is_kept_in_the_tasks_table(node_dir: Path) -> None:
    with Node(_settings(node_dir), kinds={"worker": Worker}) as node:
        assert node.runtime is not None and node.bridge is not None and node.journal is not None
        assert node.http is not None and node.loop is not None
        # The node serves "worker" itself: each task runs on an agent of its pool (task-worker-...).
        task = _mcp_call(node.http.url, "submit_task", {"task_type": "worker", "payload": {"n": 21}})["task"]
        conninfo = node.journal.conninfo
        row = _wait_for("the task done in PostgreSQL", lambda: _rows(
            conninfo, "SELECT state, kind, payload, attempts, result, agent_id FROM tasks "
                      "WHERE task_id = %s AND state = 'done'", task["task_id"]))
        assert row[0][:5] == ("done", "worker", {"n": 21}, 1, {"doubled": 42})
        assert row[0][5].startswith("task-worker-")
        task_id = task["task_id"]

    # Another run of the node has not seen the task on the bus: it answers from the table.
    with Node(_settings(node_dir), kinds={"worker": Worker}) as again:
        assert again.http is not None
        found = _mcp_call(again.http.url, "get_task", {"task_id": task_id})["task"]
        assert found["status"] == "done" and found["result"] == {"doubled": 42}
