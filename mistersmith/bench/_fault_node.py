"""What the fault scenarios share: a ``mistersmith serve`` child to kill, and a client that records.

- ``ServeChild``: ``mistersmith serve --json`` on an external NATS and
  PostgreSQL, in its own data directory, with the fault kinds
  (``_fault_kinds``). ``start`` returns once its ``ready`` line is out;
  ``kill`` is ``kill -9``; ``start`` again reuses the data directory (and so
  the node id and the spool). Launched with a parent-death SIGKILL, from the
  calling thread: call ``start`` from a thread that outlives the child (the
  signal fires when the forking thread ends).
- ``Recorder``: a nats-py connection that records every supervision event
  published on ``agents.*.status.>`` (Jepsen-style: the history is what the
  scenario asserts on).
- ``poll_until``: wait for a condition nobody notifies (PostgreSQL rows, an
  HTTP stat) with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import orjson
import psycopg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith.embedded._process import parent_death_signal

from ._fault_kinds import KINDS
from ._harness import pump_lines

__all__ = ["Recorder", "ServeChild", "connect", "control", "poll_until", "poll_until_async", "rows"]

T = TypeVar("T")

START_S = 90.0
WAIT_S = 60.0


class ServeChild:
    """One ``mistersmith serve --json`` child (see the module)."""

    def __init__(self, home: Path, node_id: str, nats_url: str, database_url: str,
                 env: dict[str, str] | None = None) -> None:
        self.node_id = node_id
        self.data_dir = home / node_id
        self.log_path = home / f"{node_id}.log"
        self.cmd = [sys.executable, "-m", "mistersmith.cli", "serve", "--json", "--data-dir", str(self.data_dir),
                    "--node-id", node_id, "--http-port", "0", "--nats-url", nats_url, "--database-url",
                    database_url, *KINDS]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.starts = 0

    def start(self) -> ServeChild:
        lines: queue.Queue[bytes | None] = queue.Queue()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                         env=self.env, start_new_session=True,
                                         preexec_fn=parent_death_signal(signal.SIGKILL))
        self.starts += 1
        pump_lines(self.proc, lines, f"fault-serve-{self.node_id}")
        deadline = time.monotonic() + START_S
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"{self.node_id} was not ready within {START_S:.0f} s; see {self.log_path}") from None
            if line is None:
                raise RuntimeError(f"{self.node_id} exited before it was ready:\n{self.log_tail()}")
            if line.startswith(b"{") and orjson.loads(line).get("event") == "ready":
                self.ready = orjson.loads(line)
                return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> int | None:
        """``kill -9`` and reap; the exit status (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped child must die too
            self.proc.kill()
        return self.proc.wait(WAIT_S)

    def http(self, path: str) -> Any:
        with urllib.request.urlopen(self.ready["http_url"] + path, timeout=5) as response:
            return json.loads(response.read())

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


async def _quiet(error: Exception) -> None:
    del error  # the client's view of a fault it was told about: the scenario records what matters


async def connect(url: str) -> NATS:
    return await nats.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.1, allow_reconnect=True, error_cb=_quiet)


async def control(nc: NATS, action: str, body: dict[str, Any], timeout_s: float = WAIT_S) -> Any:
    reply = orjson.loads((await nc.request(f"system.control.{action}", orjson.dumps(body), timeout=timeout_s)).data)
    if not reply.get("ok"):
        raise RuntimeError(f"system.control.{action} {body}: {reply.get('error')}")
    return reply["result"]


@dataclass
class Recorder:
    """Every supervision event seen on ``agents.*.status.>``: ``{event_id: (agent_id, event_type)}``."""

    nc: NATS
    events: dict[str, tuple[str, str]] = field(default_factory=dict)
    duplicates: int = 0

    async def start(self) -> Recorder:
        await self.nc.subscribe("agents.*.status.>", cb=self._on_event)
        await self.nc.flush()
        return self

    async def _on_event(self, msg: Msg) -> None:
        payload = orjson.loads(msg.data).get("payload") or {}
        if "event_id" not in payload:  # a heartbeat, not a supervision event
            return
        event_id = str(payload["event_id"])
        if event_id in self.events:
            self.duplicates += 1
        self.events[event_id] = (str(payload["agent_id"]), str(payload["event_type"]))

    def of_type(self, event_type: str) -> set[str]:
        return {agent for agent, t in self.events.values() if t == event_type}


def rows(conninfo: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def poll_until(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """``check()`` until it returns something (not None); raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.1f} s")
        time.sleep(every_s)


async def poll_until_async(check: Callable[[], Awaitable[T | None]], timeout_s: float, what: str,
                           every_s: float = 0.05) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await check()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.1f} s")
        await asyncio.sleep(every_s)
