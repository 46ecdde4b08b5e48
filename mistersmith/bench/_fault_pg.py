"""Fault 3: PostgreSQL stopped for ``down_s`` under load, then started again.

One ``serve`` child on a nats-server and a PostgreSQL server of the
scenario's own (the server is stopped: never a shared one). Under load:
``agents`` ``tally`` agents (not durable: a durable commit needs the
database and is refused while it is away, by design) each asked ``add`` in a
loop, every ``fail_every``-th command a ``fail`` (``failed`` and
``restarted`` events); at the end of the outage ``spawns`` spawns are tried
(a spawn claims its id in PostgreSQL, so each is refused, ``unavailable``,
after the pool's connect timeout: recorded, not a fault). The node's lease is set longer than the outage
(``cluster.node_lease_s``): a node that cannot renew its lease stops serving
its agents, by design, and that is not the fault measured here.

Checked once PostgreSQL is back:

- every supervision event published on ``agents.*.status.>`` (before,
  during and after the outage) is in ``supervision_events``;
- each once: the node's ``node_seq`` runs 1..max with no hole and no
  repeat (one run, so every number it gave an event is on disk), and no
  ``event_id`` twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from psycopg import sql

from mistersmith.embedded.postgres import EmbeddedPostgres

from ._fault_kill import NODE_ENV
from ._fault_node import WAIT_S, Recorder, ServeChild, connect, control, poll_until, rows

__all__ = ["PgResult", "PgSizes", "stop_postgres_mid_load"]

PAUSE_S = 0.02
NODE_ID = "fault-pg"


@dataclass(frozen=True, slots=True)
class PgSizes:
    agents: int
    down_s: float
    before_s: float = 1.0
    after_s: float = 1.0
    fail_every: int = 10
    spawns: int = 5


@dataclass
class PgResult:
    events_seen: int = 0
    events_during_outage: int = 0
    events_lost: list[str] = field(default_factory=list)
    journaled: int = 0
    seq_holes: int = 0
    seq_repeats: int = 0
    duplicate_event_ids: int = 0
    spawned_during_outage: int = 0
    spawn_refusals: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    down_s: float = 0.0
    caught_up_s: float = 0.0
    """From PostgreSQL's return until every published event was in it."""
    total_s: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.events_lost:
            found.append(f"{len(self.events_lost)} published events not in the journal: {self.events_lost[:5]}")
        if self.seq_holes or self.seq_repeats or self.duplicate_event_ids:
            found.append(f"node_seq: {self.seq_holes} missing, {self.seq_repeats} repeated; "
                         f"{self.duplicate_event_ids} event ids twice")
        if not self.events_during_outage:
            found.append("no event was published during the outage: the load did not reach it")
        return found


async def _load(nc: NATS, agent: str, fail_every: int, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        command = "fail" if n % fail_every == fail_every - 1 else "add"
        body = orjson.dumps({"op": f"{agent}.{n}"} if command == "add" else {})
        try:
            msg = await nc.request(f"agents.{agent}.commands.{command}", body, timeout=2.0)
        except (NoRespondersError, TimeoutError) as exc:
            outcomes[type(exc).__name__] += 1
            await asyncio.sleep(PAUSE_S)
            continue
        reply = orjson.loads(msg.data)
        outcomes["ok" if reply["ok"] else reply["error"]["code"]] += 1
        if not reply["ok"] and reply["error"]["code"] != "agent_failed":
            await asyncio.sleep(PAUSE_S)


async def _scenario(pg: EmbeddedPostgres, nats_url: str, database_url: str, sizes: PgSizes,
                    result: PgResult) -> dict[str, tuple[str, str]]:
    nc = await connect(nats_url)
    try:
        recorder = await Recorder(nc).start()
        agents = [f"tally-{i:03d}" for i in range(sizes.agents)]
        await asyncio.gather(*(control(nc, "spawn", {"kind": "tally", "agent_id": a, "restart": "permanent"})
                               for a in agents))
        stop = asyncio.Event()
        loops = [asyncio.create_task(_load(nc, a, sizes.fail_every, stop, result.outcomes)) for a in agents]
        try:
            await asyncio.sleep(sizes.before_s)  # the load runs (its length, not a synchronisation)
            t_down = time.monotonic()
            await asyncio.to_thread(pg.stop)
            await nc.flush()
            seen_before = set(recorder.events)
            await asyncio.sleep(max(0.0, sizes.down_s - (time.monotonic() - t_down)))  # the outage's length
            await nc.flush()
            result.events_during_outage = len(set(recorder.events) - seen_before)
            # Last: a spawn waits for PostgreSQL (up to the pool's timeout) to claim its id, in the
            # spawner's thread; the root supervisor goes on restarting the siblings meanwhile.
            async def spawn(i: int) -> None:  # a spawn claims its id in PostgreSQL: refused while it is away
                try:
                    await control(nc, "spawn", {"kind": "tally", "agent_id": f"late-{i:03d}",
                                                "restart": "permanent"})
                    result.spawned_during_outage += 1
                except RuntimeError as exc:
                    result.spawn_refusals.append(str(exc))

            await asyncio.gather(*map(spawn, range(sizes.spawns)))
            await asyncio.to_thread(pg.start)
            t_up = time.monotonic()
            result.down_s = t_up - t_down
            await asyncio.sleep(sizes.after_s)  # the load goes on
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
        await nc.flush()
        seen = dict(recorder.events)
        result.events_seen = len(seen)

        def journaled() -> float | None:
            ids = {str(r[0]) for r in rows(database_url, "SELECT event_id FROM supervision_events")}
            return time.monotonic() if set(seen) <= ids else None

        try:
            result.caught_up_s = await asyncio.to_thread(poll_until, journaled, WAIT_S, "every event journaled") - t_up
        except TimeoutError:
            result.caught_up_s = float("inf")
    finally:
        await nc.close()
    return seen


def _check(database_url: str, seen: dict[str, tuple[str, str]], result: PgResult) -> None:
    ids = [str(r[0]) for r in rows(database_url, "SELECT event_id FROM supervision_events")]
    result.journaled = len(ids)
    result.events_lost = sorted(set(seen) - set(ids))
    result.duplicate_event_ids = len(ids) - len(set(ids))
    low, high, n, distinct = rows(database_url, "SELECT min(node_seq), max(node_seq), count(*), "
                                  "count(DISTINCT node_seq) FROM supervision_events WHERE node_id = %s",
                                  (NODE_ID,))[0]
    result.seq_repeats = n - distinct
    result.seq_holes = (high - low + 1 - distinct) + (low - 1)


def stop_postgres_mid_load(home: Path, pg: EmbeddedPostgres, nats_url: str, sizes: PgSizes) -> PgResult:
    """Run the scenario (see the module) on ``pg`` (running, the scenario's own: it is stopped)."""
    result = PgResult()
    started = time.monotonic()
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("ms_fault_pg")))
    database_url = pg.conninfo("ms_fault_pg")
    env = {**NODE_ENV, "MISTERSMITH_CLUSTER_NODE_LEASE_S": str(max(5.0, sizes.down_s * 2 + 10)),
           "MISTERSMITH_DATABASE_POOL_MIN": "1"}
    node = ServeChild(home, NODE_ID, nats_url, database_url, env)
    node.start()
    try:
        seen = asyncio.run(_scenario(pg, nats_url, database_url, sizes, result))
    except BaseException as exc:
        raise RuntimeError(f"{exc!r}; node log:\n{node.log_tail()}") from exc
    finally:
        node.kill()
    _check(database_url, seen, result)
    result.total_s = time.monotonic() - started
    return result
