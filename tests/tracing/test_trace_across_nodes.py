"""One trace across two processes: HTTP → MCP tool → NATS → agent command → journal commit.

Node A runs in this process with an in-memory span exporter; node B is a
``mistersmith serve`` subprocess on the same nats-server and PostgreSQL,
exporting over OTLP (http/protobuf, turned on by ``OTEL_EXPORTER_OTLP_ENDPOINT``
alone) to a stand-in collector the test runs. An MCP ``send_command`` on A
names an agent that runs on B, so the command crosses NATS, and the span
context with it. The whole parent–child chain is asserted, span by span, and
the event the command caused carries the trace id in the journal.
"""

from __future__ import annotations

import json
import os
import threading
import time
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
from psycopg import sql
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _collector import Collector
from mistersmith import tracing
from mistersmith.cli import EXIT_OK, main
from mistersmith.config import load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.journal.insert import NOTIFY_CHANNEL
from mistersmith.node import Node

HERE = Path(__file__).resolve().parent
WAIT_S = 30.0


class Exporter(InMemorySpanExporter):
    """An in-memory exporter that a test can wait on: a span ends after its response has gone (HTTP)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()

    def export(self, spans: Any) -> Any:
        result = super().export(spans)
        with self.arrived:
            self.arrived.notify_all()
        return result

    def wait_for(self, predicate: Any, timeout_s: float) -> list[Any]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: predicate(self.get_finished_spans()), timeout_s), \
                [s.name for s in self.get_finished_spans()]
        return list(self.get_finished_spans())


EXPORTER = Exporter()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def node_b(tmp_path: Path, own_nats: EmbeddedNats, journal_db: str, collector: Collector) -> Iterator[dict[str, Any]]:
    env = {**os.environ, "MISTERSMITH_NATS_URL": own_nats.url, "MISTERSMITH_DATABASE_URL": journal_db,
           "MISTERSMITH_NODE_ID": "node-b", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_SERVICE_NAME": "node-b", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    log = open(tmp_path / "node-b.log", "w")  # noqa: SIM115 - the child's stderr
    proc = subprocess.Popen([sys.executable, "-m", "mistersmith", "serve", "--data-dir", str(tmp_path / "b"),
                             "--http-port", "0", "--json", "--kind", "crasher=_trace_kinds:Crasher"],
                            stdout=subprocess.PIPE, stderr=log, text=True, cwd=HERE, env=env)
    log.close()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, (tmp_path / "node-b.log").read_text()
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT_S)


@pytest.fixture
def node_a(tmp_path: Path, own_nats: EmbeddedNats, journal_db: str) -> Iterator[Node]:
    tracing.configure_exporter(EXPORTER, batch=False, service_name="node-a")
    EXPORTER.clear()
    node = Node(load_settings({"node.data_dir": str(tmp_path / "a"), "node.id": "node-a", "http.port": 0,
                               "nats.url": own_nats.url, "database.url": journal_db})).start()
    try:
        yield node
    finally:
        node.stop()
        tracing.disable()
        EXPORTER.clear()


async def _spawn_on_b(url: str) -> None:
    nc = await nats.connect(url)
    try:
        reply = json.loads((await nc.request("system.node.node-b.spawn", json.dumps(
            {"kind": "crasher", "agent_id": "victim"}).encode(), timeout=WAIT_S)).data)
        assert reply["ok"] is True, reply
    finally:
        await nc.close()


def _http_url(node: Node) -> str:
    assert node.http is not None
    return str(node.http.url)


def _mcp_send(http_url: str, command: str) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "send_command", "arguments": {"agent_id": "victim", "command": command}}}).encode()
    request = urllib.request.Request(http_url + "/mcp", body, {"Content-Type": "application/json",
                                                               "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as resp:
        result: dict[str, Any] = json.loads(resp.read())["result"]
    return result


def _shipped_events(journal_db: str, trace_id: str) -> list[tuple[Any, ...]]:
    """The victim's events of this trace, once the writer has shipped any (it NOTIFYs after each commit)."""
    with psycopg.connect(journal_db, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        deadline = time.monotonic() + WAIT_S
        while True:
            rows = conn.execute("SELECT event_type FROM supervision_events WHERE agent_id = 'victim' "
                                "AND trace_id = %s ORDER BY seq", (trace_id,)).fetchall()
            if rows or time.monotonic() > deadline:
                return rows
            for _ in conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
                pass


def test_one_trace_from_http_on_one_node_to_the_journal_commit_on_another(
    node_b: dict[str, Any], node_a: Node, own_nats: EmbeddedNats, collector: Collector, journal_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    asyncio.run(_spawn_on_b(own_nats.url))
    assert _mcp_send(_http_url(node_a), "work")["structuredContent"]["result"] == "worked"  # over NATS to B
    EXPORTER.clear()

    crashed = _mcp_send(_http_url(node_a), "crash")
    assert crashed["isError"] is True and "agent_failed" in crashed["content"][0]["text"]

    def has_http_span(spans: Any) -> bool:  # it ends once the response went: the client may be first
        tools = [s for s in spans if s.name == "mcp.tool send_command"]
        return bool(tools) and any(s.name == "HTTP POST /mcp" and s.context.trace_id == tools[0].context.trace_id
                                   for s in spans)

    finished = EXPORTER.wait_for(has_http_span, WAIT_S)
    [tool] = [s for s in finished if s.name == "mcp.tool send_command"]
    trace_id = format(tool.context.trace_id, "032x")
    by_id = {s.context.span_id: s for s in finished if format(s.context.trace_id, "032x") == trace_id}
    assert tool.parent is not None
    method = by_id[tool.parent.span_id]
    assert method.name == "mcp tools/call" and method.parent is not None
    http_span = by_id[method.parent.span_id]
    assert http_span.name == "HTTP POST /mcp" and http_span.parent is None  # the root: the client sent none

    def on_b(name: str, parent: str) -> Any:
        return collector.wait_for(lambda s: s.name == name and s.trace_id == trace_id and s.parent_id == parent,
                                  WAIT_S)

    received = on_b("nats.receive agents.victim.commands.crash", format(tool.context.span_id, "016x"))
    assert received.service == "node-b"  # the span context crossed the process boundary over NATS
    command = on_b("agent.command crash", received.span_id)
    assert command.attributes["mistersmith.agent_id"] == "victim"
    assert command.attributes["mistersmith.outcome"] == "crash"
    on_b("journal.commit", command.span_id)  # the failed event's durable commit, under the command
    on_b("nats.reply", received.span_id)

    rows = _shipped_events(journal_db, trace_id)  # durable in B's spool once committed; shipped to PostgreSQL after
    assert [r[0] for r in rows][:1] == ["failed"]  # what the request caused, found by its trace id
    capsys.readouterr()
    assert main(["replay", "--trace", trace_id, "--database-url", journal_db, "--json"]) == EXIT_OK
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert replayed and {e["trace_id"] for e in replayed} == {trace_id} and replayed[0]["event_type"] == "failed"
