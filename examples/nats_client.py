"""Drive a MisterSmith node from a separate process, with nothing but nats-py.

Starts ``mistersmith serve`` as a subprocess (embedded NATS and PostgreSQL in a
temporary data directory, free ports), then talks to it as any NATS client in
any language would (as the node's client user, whose password the node wrote
in its data directory): spawns an agent on ``system.control.spawn``, commands it on
``agents.{id}.commands.{cmd}`` (a plain JSON body, a tell, a full envelope),
crashes it and watches ``agents.{id}.status.*`` report the restart, lists the
agents, asks for an agent nobody hosts, stops the agent, and stops the node
with SIGTERM.

Run it: ``python examples/nats_client.py``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError


def start_node(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``mistersmith serve --json`` prints one line once the node is up: where it listens."""
    log = open(data_dir.parent / "serve.log", "w")  # noqa: SIM115 - the node's logs, kept out of our output
    proc = subprocess.Popen(
        [sys.executable, "-m", "mistersmith", "serve", "--data-dir", str(data_dir), "--http-port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until ready; empty if the node failed to start
    if not line:
        proc.wait()
        raise SystemExit(f"the node did not start:\n{(data_dir.parent / 'serve.log').read_text()}")
    return proc, json.loads(line)


async def ask(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request; the reply is {"ok": true, "result": ...} or {"ok": false, "error": {...}}.

    It carries a W3C ``traceparent`` (a fresh trace here; a traced program sends its current span's):
    what the command causes is recorded with that trace id (``mistersmith replay --trace ID``)."""
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10, headers={"traceparent": traceparent})
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def as_a_nats_client(url: str, credentials_file: str) -> None:
    # The embedded nats-server requires a password. The node wrote its client
    # user into the data dir (mode 0600); the ready line names that file.
    creds = json.loads(Path(credentials_file).read_text())
    nc = await nats.connect(url, user=creds["user"], password=creds["password"])
    try:
        statuses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_status(msg: Msg) -> None:
            statuses.put_nowait(json.loads(msg.data))  # an envelope: id, type, ts, source, target, payload

        await nc.subscribe("agents.worker-1.status.*", cb=on_status)
        await nc.flush()

        print("spawn   ->", await ask(nc, "system.control.spawn", {"kind": "echo", "agent_id": "worker-1"}))
        print("echo    ->", await ask(nc, "agents.worker-1.commands.echo", {"job": 42}))
        await nc.publish("agents.worker-1.commands.echo", b'{"fire": "and forget"}')  # a tell: no reply subject
        envelope = {"id": uuid.uuid4().hex, "type": "command", "ts": datetime.now(UTC).isoformat(),
                    "source": "nats-client-example", "payload": {"wrapped": True}}
        print("envelope->", await ask(nc, "agents.worker-1.commands.echo", envelope))

        print("fail    ->", await ask(nc, "agents.worker-1.commands.fail", {"message": "crash on purpose"}))
        while True:  # the supervisor's decisions, as they happen
            event = await asyncio.wait_for(statuses.get(), 10)
            if event["type"] == "heartbeat":
                continue
            payload = event["payload"]
            print(f"status  -> {event['type']:<18} restart_count={payload['restart_count']} "
                  f"reason={payload['reason']!r}")
            if event["type"] == "restarted":
                break
        print("ping    ->", await ask(nc, "agents.worker-1.commands.ping", {}))

        listed = await ask(nc, "system.control.list", {})
        print("list    ->", [(a["id"], a["kind"], a["node_id"]) for a in listed["result"]["agents"]])
        try:
            await nc.request("agents.nobody.commands.ping", b"{}", timeout=5)
        except NoRespondersError:
            print("nobody  -> no responders: no node hosts that agent")
        print("stop    ->", await ask(nc, "system.control.stop", {"agent_id": "worker-1"}))
    finally:
        await nc.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
        proc, node = start_node(Path(tmp) / "node")
        print(f"node {node['node_id']} is up: NATS {node['nats_url']}, HTTP {node['http_url']}")
        try:
            asyncio.run(as_a_nats_client(node["nats_url"], node["nats_credentials"]))
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful: agents, then edges, then the embedded servers
            print("node exited with", proc.wait(60))


if __name__ == "__main__":
    main()
