"""Fault 2: the nats-server killed (SIGKILL), then started again (same port, same store) under load.

One ``serve`` child on the scenario's nats-server and a PostgreSQL database.
Under load: ``agents`` ``tally`` agents each asked ``add`` in a loop, and a
submitter putting a ``job`` task on the JetStream queue every ``task_every_s``
(``Nats-Msg-Id`` = task id; resent until JetStream acks it, so one task is
never two). Halfway, the nats-server is killed with ``kill -9``, kept down
``down_s``, and started again; the load goes on for ``after_s``.

Checked over the whole history:

- the node reconnects: its ``/stats/nats`` says ``connected`` again, within
  5 s of the server's return (the figure);
- every task JetStream acknowledged (a ``PubAck``) is ``done`` in the
  ``tasks`` table, exactly those, each with its input;
- every agent answers again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.bridge import subjects
from mistersmith.embedded.nats import EmbeddedNats

from ._fault_kill import NODE_ENV
from ._fault_node import WAIT_S, ServeChild, connect, control, poll_until, rows

__all__ = ["NatsResult", "NatsSizes", "RECONNECT_TARGET_S", "kill_nats_mid_load"]

RECONNECT_TARGET_S = 5.0
TASKS_WAIT_S = 90.0
"""A task a worker held when the server died is redelivered after the queue's ack wait (30 s)."""
PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class NatsSizes:
    agents: int
    before_s: float
    down_s: float
    after_s: float
    task_every_s: float = 0.02
    work_s: float = 0.01


@dataclass
class NatsResult:
    tasks_acked: int = 0
    tasks_done: int = 0
    tasks_lost: list[str] = field(default_factory=list)
    tasks_unexpected: list[str] = field(default_factory=list)
    tasks_wrong: list[str] = field(default_factory=list)
    retried_tasks: int = 0
    reconnect_s: float = float("inf")
    """From the server's return (``start()`` returned: it accepts clients) to the node's ``connected``."""
    down_s: float = 0.0
    tasks_done_after_s: float = 0.0
    agents: int = 0
    answering_after: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    node_reconnects: int = 0
    total_s: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.tasks_lost:
            found.append(f"{len(self.tasks_lost)} acknowledged tasks not done: {self.tasks_lost[:5]}")
        if self.tasks_unexpected or self.tasks_wrong:
            found.append(f"tasks made up {self.tasks_unexpected[:5]} or wrong {self.tasks_wrong[:5]}")
        if self.reconnect_s > RECONNECT_TARGET_S:
            found.append(f"the node reconnected {self.reconnect_s:.2f} s after the server's return "
                         f"(target {RECONNECT_TARGET_S:g} s)")
        if self.answering_after != self.agents:
            found.append(f"{self.answering_after} of {self.agents} agents answer after the outage")
        return found


class _Load:
    def __init__(self, nc: NATS, sizes: NatsSizes, agents: list[str]) -> None:
        self.nc, self.sizes, self.agents = nc, sizes, agents
        self.stop = asyncio.Event()
        self.acked: dict[str, int] = {}
        self.tried: set[str] = set()
        self.run = uuid.uuid4().hex[:8]
        self.outcomes: Counter[str] = Counter()
        self.last_ok: dict[str, float] = {}
        self.numbers = itertools.count()

    async def ask(self, agent: str) -> None:
        while not self.stop.is_set():
            n = next(self.numbers)
            t = time.monotonic()
            try:
                msg = await self.nc.request(f"agents.{agent}.commands.add", orjson.dumps({"op": f"{agent}.{n}"}),
                                            timeout=1.0)
            except NoRespondersError:
                self.outcomes["no_responders"] += 1
                await asyncio.sleep(PAUSE_S)
                continue
            except Exception as exc:  # disconnected, or a timeout: the client's own view of the outage
                self.outcomes[type(exc).__name__] += 1
                await asyncio.sleep(PAUSE_S)
                continue
            outcome = "ok" if orjson.loads(msg.data)["ok"] else orjson.loads(msg.data)["error"]["code"]
            self.outcomes[outcome] += 1
            if outcome == "ok":
                self.last_ok[agent] = t

    async def submit(self) -> None:
        js = self.nc.jetstream()
        for i in itertools.count():
            if self.stop.is_set():
                return
            task_id = f"task-{self.run}-{i:05d}"  # unique per run: JetStream drops a Msg-Id it saw within 2 min
            body = orjson.dumps({"task_id": task_id, "payload": {"x": i, "work_s": self.sizes.work_s}})
            self.tried.add(task_id)
            while True:  # until acked: the same Nats-Msg-Id, so never twice
                try:
                    await js.publish(subjects.task_queue("job", "normal"), body,
                                     headers={"Nats-Msg-Id": task_id}, timeout=1.0)
                    self.acked[task_id] = i
                    break
                except Exception:  # the server is away: publish again (the stop ends it unacked, uncounted)
                    if self.stop.is_set():
                        return
                    await asyncio.sleep(PAUSE_S)
            await asyncio.sleep(self.sizes.task_every_s)  # the submitter's pace


async def _answering(nc: NATS, agents: list[str]) -> int:
    async def one(agent: str) -> bool:
        try:
            msg = await nc.request(f"agents.{agent}.commands.get", b"{}", timeout=WAIT_S / 4)
        except (NoRespondersError, NatsTimeoutError):
            return False
        return bool(orjson.loads(msg.data)["ok"])

    return sum(await asyncio.gather(*map(one, agents)))


async def _scenario(server: EmbeddedNats, node: ServeChild, database_url: str, sizes: NatsSizes,
                    result: NatsResult) -> tuple[dict[str, int], set[str]]:
    nc = await connect(server.url)
    try:
        agents = [f"tally-{i:03d}" for i in range(sizes.agents)]
        result.agents = len(agents)
        await asyncio.gather(*(control(nc, "spawn", {"kind": "tally", "agent_id": a, "restart": "permanent"})
                               for a in agents))
        load = _Load(nc, sizes, agents)
        tasks = [asyncio.create_task(load.ask(a)) for a in agents] + [asyncio.create_task(load.submit())]
        try:
            await asyncio.sleep(sizes.before_s)  # the load runs (its length, not a synchronisation)
            before = node.http("/stats/nats")["reconnects"]
            pid = server.pid
            assert pid is not None
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(poll_until, lambda: True if not server.running else None, WAIT_S,
                                    "the nats-server is gone")
            await asyncio.sleep(max(0.0, sizes.down_s - (time.monotonic() - t_kill)))  # the outage's length
            await asyncio.to_thread(server.start)
            t_up = time.monotonic()
            result.down_s = t_up - t_kill

            def reconnected() -> float | None:
                stats = node.http("/stats/nats")
                return time.monotonic() if stats["connected"] and stats["reconnects"] > before else None

            t_back = await asyncio.to_thread(poll_until, reconnected, WAIT_S, "the node reconnects", 0.01)
            result.reconnect_s = t_back - t_up
            result.node_reconnects = node.http("/stats/nats")["reconnects"] - before
            await asyncio.sleep(sizes.after_s)  # the load goes on
        finally:
            load.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        result.outcomes = load.outcomes
        result.answering_after = await _answering(nc, agents)
        t_stop = time.monotonic()
        acked = dict(load.acked)
        result.tasks_acked = len(acked)

        def all_done() -> list[tuple[Any, ...]] | None:
            got = rows(database_url, "SELECT task_id, state, result, attempts FROM tasks")
            return got if sum(r[1] == "done" for r in got) >= len(acked) else None

        try:
            await asyncio.to_thread(poll_until, all_done, TASKS_WAIT_S, "every acknowledged task done", 0.1)
        except TimeoutError:
            pass
        result.tasks_done_after_s = time.monotonic() - t_stop
    finally:
        await nc.close()
    return acked, load.tried


def kill_nats_mid_load(home: Path, server: EmbeddedNats, database_url: str, sizes: NatsSizes) -> NatsResult:
    """Run the scenario (see the module) on ``server`` (running); the node is killed at the end."""
    result = NatsResult()
    started = time.monotonic()
    node = ServeChild(home, "fault-nats", server.url, database_url, NODE_ENV)
    node.start()
    try:
        acked, tried = asyncio.run(_scenario(server, node, database_url, sizes, result))
    except BaseException as exc:
        raise RuntimeError(f"{exc!r}; node log:\n{node.log_tail()}") from exc
    finally:
        node.kill()
    done = {r[0]: r for r in rows(database_url, "SELECT task_id, state, result, attempts FROM tasks")}
    result.tasks_done = sum(r[1] == "done" for r in done.values())
    result.tasks_lost = sorted(t for t in acked if t not in done or done[t][1] != "done")
    result.tasks_unexpected = sorted(set(done) - tried)
    result.tasks_wrong = sorted(t for t, x in acked.items() if t in done and done[t][1] == "done"
                                and done[t][2].get("x") != x)
    result.retried_tasks = sum(r[3] > 1 for r in done.values())
    result.total_s = time.monotonic() - started
    return result
