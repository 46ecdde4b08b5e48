"""`mistersmith cluster up`: three routed nats-servers, one PostgreSQL and N `serve` nodes on one machine;
a NATS client sees every node, an agent spawned on one answers, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from _cli_helpers import WAIT_S, alive, children, cli_argv, processes_using, run_cli
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.cli import EXIT_OK, EXIT_USAGE

START_S = 40.0  # a healthy start takes about 10 s


class _ClusterUp:
    """``mistersmith cluster up --json`` in a subprocess, its stdout read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.stderr_path = home.parent / "cluster-up.stderr"
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(cli_argv("cluster", "up", "--json", "--data-dir", str(home), *args),
                                         stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="cluster-up-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_record(self, timeout_s: float) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout_s)
        assert line is not None, f"cluster up ended:\n{self.stderr()}"
        record: dict[str, Any] = json.loads(line)
        return record

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


async def _request(nc: Any, subject: str, body: dict[str, Any]) -> Any:
    msg = await nc.request(subject, orjson.dumps(body), timeout=5.0)
    return orjson.loads(msg.data)


async def _until(what: str, check: Any, deadline: float) -> Any:
    """Ask ``check()`` again until it returns something truthy (a failed request counts as not yet)."""
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (NoRespondersError, NatsTimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.1)  # polling the cluster's answer with a deadline, not synchronising on time
    raise AssertionError(f"{what} not seen within the deadline; last: {last!r}")


async def _drive(urls: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 20.0
    nc = await nats.connect(urls, connect_timeout=2)
    try:
        async def ping() -> Any:
            reply = await _request(nc, "system.control.ping", {})
            return reply if reply.get("ok") else None

        async def listed() -> Any:
            reply = await _request(nc, "system.control.list", {})
            return reply if reply.get("ok") and len(reply["result"]["nodes"]) == 3 else None

        pong = await _until("a ping answer", ping, deadline)
        every = await _until("3 nodes in system.control.list", listed, deadline)
        spawned = await _request(nc, "system.control.spawn", {"kind": "echo", "agent_id": "e1"})
        echoed = await _request(nc, "agents.e1.commands.echo", {"hi": 1})
        return {"pong": pong, "list": every, "spawned": spawned, "echoed": echoed}
    finally:
        await nc.close()


def test_cluster_up_serves_three_nodes_and_stops_without_orphans(node_dir: Path) -> None:
    home = node_dir / "cluster"
    up = _ClusterUp(home, "--nodes", "3")
    try:
        ready = up.next_record(START_S)
        assert ready["event"] == "ready", ready
        assert len(ready["nats_urls"]) == 3 and all(u.startswith("nats://127.0.0.1:") for u in ready["nats_urls"])
        assert ready["nats_auth"] is False and ready["tasks_replicas"] == 3
        assert "password" not in ready["database_url"]
        nodes = ready["nodes"]
        assert [n["node_id"] for n in nodes] == ["node-1", "node-2", "node-3"]
        assert all(n["http_url"].startswith("http://127.0.0.1:") for n in nodes)
        assert len({n["http_url"] for n in nodes}) == 3

        seen = asyncio.run(_drive(ready["nats_urls"]))
        assert seen["pong"]["result"]["node"] in {"node-1", "node-2", "node-3"}
        assert sorted(seen["list"]["result"]["nodes"]) == ["node-1", "node-2", "node-3"]
        assert seen["spawned"]["ok"] is True, seen["spawned"]
        assert seen["spawned"]["result"]["agent_id"] == "e1"
        assert seen["echoed"] == {"ok": True, "result": {"hi": 1}}

        everything = [up.proc.pid, *ready["nats_pids"], ready["postgres_pid"], *(n["pid"] for n in nodes)]
        everything += [kid for pid in everything for kid in children(pid)]  # postgres backends and the like
        assert ready["postgres_pid"] in children(up.proc.pid)
    except BaseException:
        up.proc.kill()  # its servers and nodes follow it (parent-death signals)
        up.proc.wait(WAIT_S)
        raise

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(WAIT_S) == EXIT_OK, up.stderr()
    stopped = up.next_record(WAIT_S)
    assert stopped == {"event": "stopped", "reason": "SIGINT", "nodes": {"node-1": 0, "node-2": 0, "node-3": 0}}
    assert [p for p in everything if alive(p)] == []
    assert processes_using(home) == []
    assert "Traceback" not in up.stderr()


@pytest.mark.parametrize(("args", "expected"), [
    (("--nodes", "0"), "--nodes 0: use 1 or more nodes"),
    (("--nodes", "2", "--http-port-base", "65535"), "--http-port-base 65535"),
    (("--kind", "no_such_module:Agent"), "cannot import 'no_such_module'"),
], ids=["no-nodes", "ports-past-65535", "bad-kind"])
def test_bad_usage_is_refused_before_anything_starts(node_dir: Path, args: tuple[str, ...], expected: str) -> None:
    home = node_dir / "cluster"
    done = run_cli("cluster", "up", "--data-dir", str(home), *args)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mistersmith: ") and expected in done.stderr
    assert not home.exists()
