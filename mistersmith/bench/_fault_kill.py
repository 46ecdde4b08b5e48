"""Fault 1: ``kill -9`` of the node in the middle of N acknowledged NATS commands to M agents.

One ``serve`` child on an external nats-server and PostgreSQL (both outlive
it). M permanent ``tally`` agents, every other one durable. A client keeps
one command in flight per agent: ``add`` with a unique op, and every
``fail_every``-th a ``fail`` (a crash: ``failed`` and ``restarted`` events).
Once half the N acknowledgements are in, the node is killed with SIGKILL
and started again on the same data directory; the load goes on until N
``add`` commands have been acknowledged in all.

What the node promises, checked over the whole history:

- every supervision event it published on ``agents.*.status.>`` (an event is
  on disk before it is published) is in ``supervision_events`` after the
  restart, once;
- every ``add`` a durable agent acknowledged is in its committed state, none
  twice;
- every permanent agent is back: a ``recovered`` event for each, and each
  answers.

Figures: events seen (and lost), agents recovered, and the seconds from the
kill until every agent answered again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from ._fault_node import WAIT_S, Recorder, ServeChild, connect, control, poll_until, rows

__all__ = ["KillResult", "KillSizes", "NODE_ENV", "kill_node_mid_load"]

NODE_ENV = {"MISTERSMITH_NODE_ROOT_INTENSITY": "1000000", "MISTERSMITH_NODE_RESTART_BACKOFF_MAX_S": "0.2"}
"""Agents crash on purpose, hundreds of times: the root tolerates it and backs off at most 0.2 s."""

REQUEST_TIMEOUT_S = 2.0
PAUSE_S = 0.02
"""The client's pause after a failed request (no responders while the node is down): its pace."""


@dataclass(frozen=True, slots=True)
class KillSizes:
    commands: int
    agents: int
    fail_every: int = 25


@dataclass
class KillResult:
    acked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    events_seen: int = 0
    events_lost: list[str] = field(default_factory=list)
    duplicate_event_ids: int = 0
    """Numbers the killed run handed out to events it never got on disk (so never published): not a loss."""
    durable_lost: dict[str, list[str]] = field(default_factory=dict)
    durable_twice: list[str] = field(default_factory=list)
    agents: int = 0
    recovered: int = 0
    answering_after: int = 0
    killed_exit: int | None = None
    back_s: float = 0.0
    restart_s: float = 0.0
    total_s: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.events_lost:
            found.append(f"{len(self.events_lost)} published events not in the journal: {self.events_lost[:5]}")
        if self.duplicate_event_ids:
            found.append(f"{self.duplicate_event_ids} event ids journaled twice")
        if self.durable_lost:
            found.append(f"acknowledged ops lost: {dict(list(self.durable_lost.items())[:3])}")
        if self.durable_twice:
            found.append(f"ops applied twice in {self.durable_twice}")
        if self.recovered != self.agents or self.answering_after != self.agents:
            found.append(f"{self.recovered} recovered and {self.answering_after} answering of {self.agents}")
        if self.killed_exit != -signal.SIGKILL:
            found.append(f"the node exited {self.killed_exit}, not by SIGKILL")
        return found


class _Load:
    """One loop per agent, one command in flight each; every reply recorded."""

    def __init__(self, nc: NATS, sizes: KillSizes, agents: list[str]) -> None:
        self.nc, self.sizes, self.agents = nc, sizes, agents
        self.acked: dict[str, list[str]] = {a: [] for a in agents}
        self.outcomes: Counter[str] = Counter()
        self.total = 0
        self.numbers = itertools.count()
        self.half = asyncio.Event()
        self.done = asyncio.Event()

    async def loop(self, agent: str) -> None:
        while not self.done.is_set():
            n = next(self.numbers)
            command = "fail" if n % self.sizes.fail_every == self.sizes.fail_every - 1 else "add"
            op = f"{agent}.{n}"
            try:
                msg = await self.nc.request(f"agents.{agent}.commands.{command}", orjson.dumps({"op": op} if command == "add" else {}),
                                            timeout=REQUEST_TIMEOUT_S)
            except NoRespondersError:
                self.outcomes["no_responders"] += 1
                await asyncio.sleep(PAUSE_S)
                continue
            except NatsTimeoutError:
                self.outcomes["timeout"] += 1
                continue
            reply = orjson.loads(msg.data)
            if not reply["ok"]:
                self.outcomes[reply["error"]["code"]] += 1
                if reply["error"]["code"] != "agent_failed":
                    await asyncio.sleep(PAUSE_S)
                continue
            self.outcomes["ok"] += 1
            assert reply["result"]["op"] == op, (reply, op)
            self.acked[agent].append(op)
            self.total += 1
            if self.total >= self.sizes.commands // 2:
                self.half.set()
            if self.total >= self.sizes.commands:
                self.done.set()


async def _answers(nc: NATS, agent: str) -> bool:
    try:
        msg = await nc.request(f"agents.{agent}.commands.get", b"{}", timeout=REQUEST_TIMEOUT_S)
    except (NoRespondersError, NatsTimeoutError):
        return False
    return bool(orjson.loads(msg.data)["ok"])


async def _scenario(node: ServeChild, nats_url: str, database_url: str, sizes: KillSizes, result: KillResult) -> None:
    nc = await connect(nats_url)
    try:
        recorder = await Recorder(nc).start()
        agents = [f"tally-{i:03d}" for i in range(sizes.agents)]
        durable = agents[::2]
        result.agents = len(agents)
        gate = asyncio.Semaphore(20)

        async def spawn(agent: str) -> None:
            async with gate:
                await control(nc, "spawn", {"kind": "tally", "agent_id": agent, "durable": agent in durable,
                                            "restart": "permanent"})

        await asyncio.gather(*map(spawn, agents))
        # A spawn is answered before its registry row ships: kill only once every row is there.
        await asyncio.to_thread(poll_until, lambda: True if rows(
            database_url, "SELECT count(*) FROM agents WHERE desired_state = 'running' AND agent_id LIKE 'tally-%%'"
        )[0][0] == len(agents) else None, WAIT_S, "every agent in the registry")
        load = _Load(nc, sizes, agents)
        loops = [asyncio.create_task(load.loop(a)) for a in agents]
        try:
            await asyncio.wait_for(load.half.wait(), WAIT_S * 4)
            t_kill = time.monotonic()
            os.kill(node.pid, signal.SIGKILL)
            result.killed_exit = node.kill()
            node.start()  # blocks this loop for the start: the load waits with it (the node is down anyway)
            t_ready = time.monotonic()
            result.restart_s = t_ready - t_kill
            while True:
                answering = await asyncio.gather(*(_answers(nc, a) for a in agents))
                if all(answering):
                    break
                if time.monotonic() - t_ready > WAIT_S:
                    break
            result.back_s = time.monotonic() - t_kill
            result.answering_after = sum(answering)
            await asyncio.wait_for(load.done.wait(), WAIT_S * 4)
        finally:
            load.done.set()
            await asyncio.gather(*loops, return_exceptions=True)
        await nc.flush()
        result.acked, result.outcomes = load.total, load.outcomes
        result.recovered = len(recorder.of_type("recovered") & set(agents))
        result.events_seen = len(recorder.events)
        durable_acked = {a: load.acked[a] for a in durable}
        live = {}
        for agent in durable:
            msg = await nc.request(f"agents.{agent}.commands.get", b"{}", timeout=WAIT_S)
            live[agent] = orjson.loads(msg.data)["result"]["ops"]
        seen = dict(recorder.events)
    finally:
        await nc.close()
    _check_journal(database_url, seen, durable_acked, live, result)


def _check_journal(database_url: str, seen: dict[str, Any], durable_acked: dict[str, list[str]],
                   live: dict[str, list[str]], result: KillResult) -> None:
    def journaled() -> set[str] | None:
        ids = {str(r[0]) for r in rows(database_url, "SELECT event_id FROM supervision_events")}
        return ids if set(seen) <= ids else None

    try:
        poll_until(journaled, WAIT_S, "every published event in the journal")
    except TimeoutError:
        pass
    ids = {str(r[0]) for r in rows(database_url, "SELECT event_id FROM supervision_events")}
    result.events_lost = sorted(set(seen) - ids)
    result.duplicate_event_ids = rows(
        database_url, "SELECT count(*) FROM (SELECT event_id FROM supervision_events GROUP BY event_id "
                      "HAVING count(*) > 1) d")[0][0]
    committed = {r[0]: r[1] for r in rows(
        database_url, "SELECT DISTINCT ON (agent_id) agent_id, state FROM agent_states "
                      "ORDER BY agent_id, version DESC")}
    for agent, acked in durable_acked.items():
        ops = committed.get(agent, {}).get("ops", [])
        if len(ops) != len(set(ops)) or live[agent] != ops:
            result.durable_twice.append(agent)
        lost = sorted(set(acked) - set(ops))
        if lost:
            result.durable_lost[agent] = lost


def kill_node_mid_load(home: Path, nats_url: str, database_url: str, sizes: KillSizes) -> KillResult:
    """Run the scenario (see the module); the node is killed at the end whatever happens."""
    result = KillResult()
    started = time.monotonic()
    node = ServeChild(home, "fault-kill", nats_url, database_url, NODE_ENV)
    node.start()
    try:
        asyncio.run(_scenario(node, nats_url, database_url, sizes, result))
    except BaseException as exc:
        raise RuntimeError(f"{exc!r}; node log:\n{node.log_tail()}") from exc
    finally:
        node.kill()
    result.total_s = time.monotonic() - started
    return result
