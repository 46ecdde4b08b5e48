"""The ``cluster`` suite: many nodes (issue 12): failover, drain, a route hop and the lease's load.

Setup, once for the whole suite: a ``NatsCluster`` (3 routed nats-servers,
JetStream; the task streams made once, ``tasks.replicas = 3``, as ``cluster
up`` does), one PostgreSQL (embedded, fsync on, or ``MISTERSMITH_DATABASE_URL``,
whose role needs CREATEDB) with a fresh migrated database, and 3 ``mistersmith
serve`` child processes. ``node-i`` is given the single URL of nats-server
``i - 1``, so it is placed on that server; this process is the client, on
server 0 only. Lease settings are the defaults (5 s lease, 1 s heartbeat, 1 s
margin, set explicitly in the nodes' environment) unless ``--quick``, which
shortens them and says so in each figure's notes. Agents are ``echo``, placed
with ``system.control.spawn`` ``{"node": ...}``; answering means an ok reply
on ``agents.<id>.commands.echo`` carrying the body sent. Every child is
killed in ``finally`` (and carries a parent-death SIGKILL).

- ``failover``: ``kill -9`` of ``node-3`` hosting 100 agents; from the kill
  until the last of them answers again (necessarily from a survivor: the
  victim is dead), p50 over 5 runs. The kill waits until the journal has
  shipped the agents' registry rows (a spawn is answered before that; an
  agent killed with its row unshipped stays with the dead node). From the
  kill on, each agent is asked every 50 ms (each ask waits 0.5 s: one sent as
  the victim dies is lost with it). The notes split the time using the
  database's rows and the journal's events (one machine, one wall clock):
  the lease left at the kill (``lease_until`` - kill), the reap (``down_at -
  lease_until``: a survivor's next round), the takeover (``down_at`` to the
  last ``taken_over``, and in how many bursts 0.5 heartbeat apart) and the
  answer (last ``taken_over`` to the last ok). Between runs the killed node
  is started again (same id, same data directory) and the moved agents
  stopped. Target ``node_lease_s + 2 s``; there is no raw baseline to run
  (Akka's default failure detection and downing take >= 10 s: a comparison,
  not measured).
- ``drain``: ``node-3`` hosting 1,000 agents is drained
  (``system.control.drain``) under a light load (10 workers each asking a
  random agent every 50 ms; a command answered ``restarting`` is retried
  until it is answered); timed from the request to the reply, which comes
  once every agent runs elsewhere. A second figure counts the commands that
  failed: no responders, no answer within 10 s, or an error other than
  ``restarting``. Target 0. Then every agent is asked once (checked).
- ``route hop``: request p50 to an agent on ``node-2`` (nats-server 1) against
  one on ``node-1`` (the client's own server 0); baseline: same-server. The
  issue sets no target; the bound shown (1.5x) is ours.
- ``lease load``: an idle cluster of 3 nodes, once each has run 11 s (past its
  first whole lease, so each round also reaps, and past PostgreSQL's 10 s
  idle flush of the start-up's counters), for 10 s: the database's
  ``xact_commit`` and written rows (``pg_stat_database``) per node per second,
  times 50 for 50 nodes. From the code, each node's round is 2 statements of
  the lease thread (the renewal ``UPDATE``, one row; the reap ``UPDATE``,
  usually none) and 2 of the takeover thread (the handoffs ``DELETE ...
  RETURNING`` in a transaction, the lost-units ``SELECT``). No target in the
  issue; the bound shown (500 commits/s for 50 nodes) is ours.

Run it with ``python -m mistersmith.bench cluster``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import nats
import orjson
import psycopg
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.embedded._process import parent_death_signal
from mistersmith.embedded.nats_cluster import NatsCluster

from ._harness import alternate, pump_lines
from ._options import Options, Progress
from ._pg import Databases
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]

T = TypeVar("T")

NODES = ("node-1", "node-2", "node-3")
VICTIM = "node-3"
TASKS_REPLICAS = 3
START_S = 90.0
"""Longest the nodes may take to print their ready line."""
WAIT_S = 60.0
"""Longest anything else waited for here may take (an agent to answer again, events to be journaled...)."""
REQUEST_TIMEOUT_S = 2.0
POLL_S = 0.05
"""How often an agent is asked again after ``no responders`` (the failover figure's resolution)."""
POLL_TIMEOUT_S = 0.5
"""How long one of those asks waits: a request sent as the victim dies can be routed to it and lost."""
LOAD_TIMEOUT_S = 10.0
"""How long a command of the drain's load waits for its answer: past it, the command is counted lost."""
AKKA_DEFAULT_S = 10.0


@dataclass(frozen=True, slots=True)
class Sizes:
    lease_s: float
    heartbeat_s: float
    margin_s: float
    failover_runs: int
    failover_agents: int
    drain_agents: int
    drain_workers: int
    hop_rounds: int
    hop_requests: int
    warmup: int
    idle_s: float
    settle_s: float
    """How long the nodes run before the lease-load window: PostgreSQL (15+) flushes an idle backend's
    counters up to 10 s late, and the nodes' start-up transactions belong before the window, not in it."""


FULL = Sizes(lease_s=5.0, heartbeat_s=1.0, margin_s=1.0, failover_runs=5, failover_agents=100, drain_agents=1_000,
             drain_workers=10, hop_rounds=10, hop_requests=200, warmup=50, idle_s=10.0, settle_s=11.0)
QUICK = Sizes(lease_s=2.0, heartbeat_s=0.25, margin_s=0.5, failover_runs=1, failover_agents=10, drain_agents=20,
              drain_workers=2, hop_rounds=2, hop_requests=30, warmup=10, idle_s=1.0, settle_s=0.0)


def _settings(sizes: Sizes) -> str:
    return f"lease {sizes.lease_s:g} s, heartbeat {sizes.heartbeat_s:g} s, margin {sizes.margin_s:g} s"


# -- the nodes ------------------------------------------------------------------------------------


class _Serve:
    """One ``mistersmith serve --json`` child: its ready line, its log, and a ``kill -9``."""

    def __init__(self, home: Path, node_id: str, nats_url: str, database_url: str, env: dict[str, str]) -> None:
        self.node_id = node_id
        self.data_dir = home / node_id
        self.log_path = home / f"{node_id}.log"
        self.cmd = [sys.executable, "-m", "mistersmith.cli", "serve", "--json", "--data-dir", str(self.data_dir),
                    "--node-id", node_id, "--http-port", "0", "--nats-url", nats_url, "--database-url", database_url]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[bytes | None] = queue.Queue()

    def launch(self) -> None:
        self.lines = queue.Queue()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                         env=self.env, start_new_session=True,
                                         preexec_fn=parent_death_signal(signal.SIGKILL))
        pump_lines(self.proc, self.lines, f"bench-cluster-{self.node_id}")

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                why = f"{self.node_id} was not ready within {START_S:.0f} s; see {self.log_path}"
                raise RuntimeError(why) from None
            if line is None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.node_id} exited before it was ready:\n{tail}")
            if line.startswith(b"{") and orjson.loads(line).get("event") == "ready":
                return

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(WAIT_S)


def _start(nodes: Sequence[_Serve]) -> None:
    """Launch the nodes together; return when every one is ready (its lease held, its bridge up)."""
    for node in nodes:
        node.launch()
    deadline = time.monotonic() + START_S
    for node in nodes:
        node.wait_ready(deadline)


def _create_streams(urls: list[str]) -> None:
    """The task streams, once, before the nodes start (nodes creating a replicated stream together can time out)."""
    from mistersmith.bridge.errors import JetStreamUnavailableError
    from mistersmith.bridge.task_streams import ensure_streams

    async def create() -> None:
        nc = await nats.connect(urls, connect_timeout=2)
        try:
            deadline = time.monotonic() + WAIT_S
            while True:
                try:
                    await ensure_streams(nc.jetstream(), TASKS_REPLICAS)
                    return
                except JetStreamUnavailableError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.2)
        finally:
            await nc.close()

    asyncio.run(create())


@dataclass
class _Bench:
    home: Path
    nats: NatsCluster
    database_url: str
    nodes: dict[str, _Serve]
    sizes: Sizes

    @property
    def client_url(self) -> str:
        return self.nats.urls[0]

    def restart(self, node_id: str) -> None:
        self.nodes[node_id].kill()
        _start([self.nodes[node_id]])

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(statement, params).fetchall()


@contextmanager
def _cluster(sizes: Sizes, progress: Progress) -> Iterator[_Bench]:
    home = Path(tempfile.mkdtemp(prefix="ms-bench-cluster-"))
    home.chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
    dbs: Databases | None = None
    nats_cluster = NatsCluster(home / "nats", size=len(NODES))
    nodes: dict[str, _Serve] = {}
    try:
        progress(f"starting 3 nats-servers, PostgreSQL and {len(NODES)} nodes in {home}")
        nats_cluster.start()
        _create_streams(nats_cluster.urls)
        dbs = Databases(home)
        database_url = dbs.fresh()
        env = {**os.environ, "MISTERSMITH_TASKS_REPLICAS": str(TASKS_REPLICAS),
               "MISTERSMITH_CLUSTER_NODE_LEASE_S": str(sizes.lease_s),
               "MISTERSMITH_CLUSTER_HEARTBEAT_S": str(sizes.heartbeat_s),
               "MISTERSMITH_CLUSTER_LEASE_MARGIN_S": str(sizes.margin_s)}
        for i, node_id in enumerate(NODES):
            nodes[node_id] = _Serve(home, node_id, nats_cluster.urls[i], database_url, env)
        t0 = time.perf_counter()
        _start(list(nodes.values()))
        progress(f"  nodes ready in {time.perf_counter() - t0:.1f} s")
        yield _Bench(home, nats_cluster, database_url, nodes, sizes)
    finally:
        try:
            for node in nodes.values():
                node.kill()
        finally:
            try:
                if dbs is not None:
                    dbs.close()
            finally:
                nats_cluster.stop()
                shutil.rmtree(home, ignore_errors=True)


# -- the client -----------------------------------------------------------------------------------


async def _connect(url: str) -> NATS:
    return await nats.connect(servers=[url], dont_randomize=True, connect_timeout=5)


async def _with_client(bench: _Bench, fn: Callable[[NATS], Awaitable[T]]) -> T:
    """``fn`` on a connection of this process to nats-server 0 (only: it is the client's own server)."""
    nc = await _connect(bench.client_url)
    try:
        return await fn(nc)
    finally:
        await nc.close()


async def _control(nc: NATS, action: str, body: dict[str, Any], timeout_s: float = WAIT_S) -> Any:
    reply = orjson.loads((await nc.request(f"system.control.{action}", orjson.dumps(body), timeout=timeout_s)).data)
    if not reply.get("ok"):
        raise RuntimeError(f"system.control.{action} {body} was refused: {reply.get('error')}")
    return reply["result"]


async def _each(ids: Sequence[str], fn: Any, concurrency: int = 50) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(agent: str) -> None:
        async with gate:
            await fn(agent)

    await asyncio.gather(*(one(agent) for agent in ids))


async def _spawn(nc: NATS, ids: Sequence[str], node_id: str) -> None:
    async def spawn(agent: str) -> None:
        placed = await _control(nc, "spawn", {"kind": "echo", "agent_id": agent, "node": node_id})
        if placed["node"] != node_id:
            raise RuntimeError(f"{agent} was placed on {placed['node']}, not {node_id}")

    await _each(ids, spawn)


async def _stop(nc: NATS, ids: Sequence[str]) -> None:
    await _each(ids, lambda agent: _control(nc, "stop", {"agent_id": agent}))


async def _echo(nc: NATS, agent: str, n: int, outcomes: Counter[str], give_up: float,
                timeout_s: float = REQUEST_TIMEOUT_S) -> bool:
    """One command, retried while it is answered ``restarting``; True once answered, False if it failed."""
    body = orjson.dumps({"n": n})
    while True:
        try:
            msg = await nc.request(f"agents.{agent}.commands.echo", body, timeout=timeout_s)
        except NoRespondersError:
            outcomes["no_responders"] += 1
            return False
        except NatsTimeoutError:
            outcomes["timeout"] += 1
            return False
        reply = orjson.loads(msg.data)
        if reply.get("ok"):
            if reply["result"] != {"n": n}:
                raise RuntimeError(f"{agent} answered {reply['result']} to {{'n': {n}}}")
            return True
        code = str(reply["error"]["code"])
        outcomes[code] += 1
        if code != "restarting" or time.monotonic() > give_up:
            return False
        await asyncio.sleep(float(reply["error"].get("retry_after_s") or POLL_S))


async def _answer_all(nc: NATS, ids: Sequence[str]) -> None:
    outcomes: Counter[str] = Counter()
    give_up = time.monotonic() + WAIT_S

    async def ask(agent: str) -> None:
        if not await _echo(nc, agent, 1, outcomes, give_up):
            raise RuntimeError(f"agent {agent} did not answer: {dict(outcomes)}")

    await _each(ids, ask)


# -- failover -------------------------------------------------------------------------------------


async def _until_answering(nc: NATS, agent: str, t0: float, outcomes: Counter[str]) -> float:
    """Ask ``agent`` every ``POLL_S`` until it answers; seconds from ``t0`` (the kill) to that answer."""
    give_up = time.monotonic() + WAIT_S
    for n in itertools.count(1):
        if await _echo(nc, agent, n, outcomes, give_up, POLL_TIMEOUT_S):
            return time.perf_counter() - t0
        if time.monotonic() > give_up:
            raise RuntimeError(f"agent {agent} did not answer within {WAIT_S:.0f} s of the kill: {dict(outcomes)}")
        await asyncio.sleep(POLL_S)
    raise AssertionError("unreachable")


def _failover_once(bench: _Bench, run_no: int) -> dict[str, float]:
    ids = [f"fo{run_no}-{i:03d}" for i in range(bench.sizes.failover_agents)]
    victim = bench.nodes[VICTIM]
    asyncio.run(_with_client(bench, lambda nc: _spawn(nc, ids, VICTIM)))
    # A spawn is answered before its events reach PostgreSQL; survivors see an agent only once the journal
    # has shipped its registry row. Killed before that, an agent stays with the dead node (until it comes
    # back): not what this figure measures, so wait for the rows.
    t_spawned = time.perf_counter()
    _wait_rows(bench, "SELECT count(*) FROM agents WHERE node_id = %s AND agent_id = ANY(%s)", (VICTIM, ids), len(ids))
    registry_lag = time.perf_counter() - t_spawned

    async def kill_and_wait(nc: NATS) -> tuple[datetime, list[float], Counter[str]]:
        await _answer_all(nc, ids)
        assert victim.proc is not None
        outcomes: Counter[str] = Counter()
        killed_at = datetime.now(UTC)  # one machine: the database's and the nodes' wall clock too
        t0 = time.perf_counter()
        victim.proc.send_signal(signal.SIGKILL)
        took = await asyncio.gather(*(_until_answering(nc, agent, t0, outcomes) for agent in ids))
        return killed_at, list(took), outcomes

    killed_at, took, outcomes = asyncio.run(_with_client(bench, kill_and_wait))
    victim.kill()  # reaped
    lease_until, down_at = bench.query("SELECT lease_until, down_at FROM nodes WHERE node_id = %s", (VICTIM,))[0]
    _wait_rows(bench, "SELECT count(DISTINCT agent_id) FROM supervision_events WHERE event_type = 'taken_over' "
                      "AND agent_id = ANY(%s)", (ids,), len(ids))
    taken = sorted(row[0] for row in bench.query(
        "SELECT max(occurred_at) FROM supervision_events WHERE event_type = 'taken_over' AND agent_id = ANY(%s) "
        "GROUP BY agent_id", (ids,)))
    answered = max(took)
    split = {
        "total_s": answered,
        "first_s": min(took),
        "registry_lag_s": registry_lag,
        "lease_left_s": (lease_until - killed_at).total_seconds(),
        "reap_s": (down_at - lease_until).total_seconds(),
        "takeover_s": (taken[-1] - down_at).total_seconds(),
        "takeover_rounds": 1 + sum((b - a).total_seconds() > bench.sizes.heartbeat_s / 2
                                   for a, b in zip(taken, taken[1:])),  # bursts of claims, half a heartbeat apart
        "answer_s": answered - (taken[-1] - killed_at).total_seconds(),
        **{f"got_{k}": float(v) for k, v in outcomes.items()},
    }
    bench.restart(VICTIM)
    asyncio.run(_with_client(bench, lambda nc: _stop(nc, ids)))
    return split


def _wait_rows(bench: _Bench, count: str, params: Sequence[Any], wanted: int) -> None:
    """Until ``count`` says ``wanted``: the journals ship events a little after they happen."""
    deadline = time.monotonic() + WAIT_S
    while (got := bench.query(count, params)[0][0]) < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{got} of {wanted} rows after {WAIT_S:.0f} s: {count}")
        time.sleep(0.02)  # the journals' next shipment


def bench_failover(bench: _Bench, progress: Progress) -> Figure:
    sizes = bench.sizes
    runs: list[dict[str, float]] = []
    for i in range(sizes.failover_runs):
        progress(f"failover run {i + 1}/{sizes.failover_runs}: kill -9 {VICTIM} hosting {sizes.failover_agents} agents")
        runs.append(_failover_once(bench, i))
        r = runs[-1]
        progress(f"  all answering after {r['total_s']:.2f} s (lease left {r['lease_left_s']:.2f}, reap "
                 f"{r['reap_s']:.2f}, takeover {r['takeover_s']:.2f} in {r['takeover_rounds']:.0f} round(s), answer "
                 f"{r['answer_s']:.2f}; registry lag before the kill {r['registry_lag_s']:.3f}; "
                 f"{ {k[4:]: int(v) for k, v in r.items() if k.startswith('got_')} })")

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    return Figure(
        key="failover_s", name=f"kill -9 -> {sizes.failover_agents} agents answering elsewhere", unit="s",
        ours=statistics.median(r["total_s"] for r in runs), baseline=None,
        target=Target("<=", sizes.lease_s + 2.0, relative=False),
        extra={"agents": sizes.failover_agents, "runs": len(runs), "node_lease_s": sizes.lease_s,
               "heartbeat_s": sizes.heartbeat_s, "margin_s": sizes.margin_s,
               "all_runs_s": " / ".join(f"{r['total_s']:.2f}" for r in runs), "first_answer_s": median("first_s"),
               "lease_left_s": median("lease_left_s"), "reap_s": median("reap_s"), "takeover_s": median("takeover_s"),
               "answer_s": median("answer_s"), "takeover_rounds": median("takeover_rounds"),
               "registry_lag_s": median("registry_lag_s"),
               **{k: statistics.median(r.get(k, 0.0) for r in runs) for k in sorted({k for r in runs for k in r
                                                                                      if k[:4] == "got_"})},
               "settings": _settings(sizes), "akka_default_s": AKKA_DEFAULT_S,
               "baseline_is": "none to run (Akka's default: >= 10 s)"},
        shown=("all_runs_s", "lease_left_s", "reap_s", "takeover_s", "takeover_rounds", "answer_s", "settings",
               "baseline_is"),
    )


# -- drain ------------------------------------------------------------------------------------------


async def _drain_under_load(nc: NATS, ids: list[str], workers_n: int) -> tuple[float, dict[str, Any], Counter[str]]:
    stop = asyncio.Event()
    outcomes: Counter[str] = Counter()
    numbers = itertools.count(1)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            ok = await _echo(nc, rng.choice(ids), next(numbers), outcomes, time.monotonic() + WAIT_S, LOAD_TIMEOUT_S)
            outcomes["answered" if ok else "failed"] += 1
            await asyncio.sleep(POLL_S)  # the client's pace: a light load

    workers = [asyncio.create_task(worker(w)) for w in range(workers_n)]
    try:
        while outcomes["answered"] < 10 * workers_n:  # the load runs before the drain starts
            await asyncio.sleep(POLL_S)
        t0 = time.perf_counter()
        report = await _control(nc, "drain", {"node": VICTIM}, timeout_s=3 * WAIT_S)
        took = time.perf_counter() - t0
        after = outcomes["answered"]
        while outcomes["answered"] < after + 10 * workers_n:  # and after it, where the agents run now
            await asyncio.sleep(POLL_S)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    await _answer_all(nc, ids)
    return took, report, outcomes


def bench_drain(bench: _Bench, progress: Progress) -> list[Figure]:
    sizes = bench.sizes
    ids = [f"dr-{i:04d}" for i in range(sizes.drain_agents)]
    progress(f"drain: spawning {sizes.drain_agents:,} agents on {VICTIM}")

    t0 = time.perf_counter()
    asyncio.run(_with_client(bench, lambda nc: _spawn(nc, ids, VICTIM)))
    spawned_s = time.perf_counter() - t0
    progress(f"  spawned in {spawned_s:.1f} s; draining {VICTIM} under a load of {sizes.drain_workers} workers")
    took, report, outcomes = asyncio.run(_with_client(bench, lambda nc: _drain_under_load(nc, ids,
                                                                                          sizes.drain_workers)))
    answered = outcomes["answered"]
    handed, refused = len(report["handed_over"]), len(report["not_handed_over"])
    if handed != len(ids) or refused:
        raise RuntimeError(f"the drain handed over {handed} of {len(ids)} agents; "
                           f"refused: {report['not_handed_over'][:3]}")
    failed = outcomes["failed"]
    progress(f"  drained in {took:.2f} s; {answered} commands answered, {failed} failed, "
             f"{outcomes['restarting']} restarting replies retried")
    common = {"agents": len(ids), "handed_over": handed, "answered": answered, "failed": failed,
              "restarting_retries": outcomes["restarting"], "workers": sizes.drain_workers,
              "spawn_s": round(spawned_s, 2), "per_agent_ms": round(took / len(ids) * 1000, 1),
              "node_lease_s": sizes.lease_s, "heartbeat_s": sizes.heartbeat_s,
              **{f"failed_{k}": v for k, v in outcomes.items() if k not in ("answered", "failed", "restarting")}}
    return [
        Figure(key="drain_s", name=f"drain of a node hosting {len(ids):,} agents", unit="s", ours=took,
               baseline=None, target=Target("<=", 10.0, relative=False), extra=common,
               shown=("per_agent_ms", "handed_over", "answered", "restarting_retries")),
        Figure(key="drain_failed", name="commands failed during the drain", unit="commands", ours=float(failed),
               baseline=None, target=Target("<=", 0.0, relative=False), extra=common,
               shown=("answered", "workers", *sorted(k for k in common if k.startswith("failed_")))),
    ]


# -- one route hop ----------------------------------------------------------------------------------


async def _requests(nc: NATS, agent: str, n: int) -> list[float]:
    body = b'{"n":1}'
    subject = f"agents.{agent}.commands.echo"
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await nc.request(subject, body, timeout=REQUEST_TIMEOUT_S)
        out.append((time.perf_counter_ns() - t0) / 1_000)
    return out


def bench_hop(bench: _Bench, progress: Progress) -> Figure:
    sizes = bench.sizes
    near, far = "hop-near", "hop-far"

    async def measure(nc: NATS) -> tuple[list[float], list[float], list[float], list[float]]:
        await _spawn(nc, [near], "node-1")
        await _spawn(nc, [far], "node-2")
        await _requests(nc, near, sizes.warmup)
        await _requests(nc, far, sizes.warmup)
        p50_far: list[float] = []
        p50_near: list[float] = []
        all_far: list[float] = []
        all_near: list[float] = []
        for i, far_first in alternate(sizes.hop_rounds):
            progress(f"route hop round {i + 1}/{sizes.hop_rounds}: {sizes.hop_requests} requests each")
            first, second = (far, near) if far_first else (near, far)
            got = {first: await _requests(nc, first, sizes.hop_requests)}
            got[second] = await _requests(nc, second, sizes.hop_requests)
            p50_far.append(percentile(got[far], 50))
            p50_near.append(percentile(got[near], 50))
            all_far += got[far]
            all_near += got[near]
        await _stop(nc, [near, far])
        return p50_far, p50_near, all_far, all_near

    p50_far, p50_near, all_far, all_near = asyncio.run(_with_client(bench, measure))
    ours, base = statistics.median(p50_far), statistics.median(p50_near)
    return Figure(
        key="route_hop_p50", name="request p50, agent on another nats-server", unit="us", ours=ours, baseline=base,
        target=Target("<=", 1.5, relative=True),
        extra={"p99": percentile(all_far, 99), "baseline_p99": percentile(all_near, 99),
               "hop_us": round(ours - base, 1), "hop": f"+{ours - base:.0f} us", "rounds": sizes.hop_rounds,
               "requests_per_round": sizes.hop_requests,
               "bound": "ours, not the issue's", "baseline_is": "agent on the client's own server"},
        shown=("hop", "p99", "baseline_p99", "bound"),
    )


# -- the lease's load -------------------------------------------------------------------------------


_STATS = """
SELECT xact_commit, tup_inserted + tup_updated + tup_deleted, tup_updated FROM pg_stat_database
WHERE datname = current_database()
"""


def bench_lease_load(bench: _Bench, progress: Progress) -> Figure:
    sizes = bench.sizes
    fresh = max(sizes.lease_s + 2 * sizes.heartbeat_s, sizes.settle_s)  # each node reaps in each round by then
    deadline = time.monotonic() + WAIT_S
    settled = "SELECT count(*) FROM nodes WHERE state = 'up' AND started_at < now() - make_interval(secs => %s)"
    while bench.query(settled, (fresh,))[0][0] < len(NODES):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the nodes were not all up for {fresh} s within {WAIT_S:.0f} s")
        time.sleep(sizes.heartbeat_s)  # waiting for the nodes' first whole lease: the state measured
    progress(f"lease load: an idle cluster of {len(NODES)} nodes for {sizes.idle_s:g} s (pg_stat_database)")
    before = bench.query(_STATS)[0]
    t0 = time.perf_counter()
    time.sleep(sizes.idle_s)  # the window measured
    after = bench.query(_STATS)[0]
    elapsed = time.perf_counter() - t0
    # The first sample's own transaction is counted in the second; the second's own is not yet.
    commits, rows, updated = (after[0] - before[0] - 1), after[1] - before[1], after[2] - before[2]
    per_node = commits / elapsed / len(NODES)
    rounds = 1 / sizes.heartbeat_s
    return Figure(
        key="lease_load_commits_s", name="idle DB load, 50 nodes (from 3)", unit="commits/s", ours=per_node * 50,
        baseline=None, target=Target("<=", 500.0, relative=False),
        extra={"per_node_commits_per_sec": round(per_node, 2),
               "rows_written_per_sec_50": round(rows / elapsed / len(NODES) * 50, 1),
               "rows_updated_per_sec_50": round(updated / elapsed / len(NODES) * 50, 1), "window_s": round(elapsed, 2),
               "heartbeat_s": sizes.heartbeat_s, "code_lease_statements_per_sec_50": 2 * rounds * 50,
               "code_statements_per_sec_50": 4 * rounds * 50,
               "per_node": f"{per_node:.1f} commits/s",
               "rows_written": f"{rows / elapsed / len(NODES) * 50:.0f}/s at 50 nodes",
               "from_code": f"lease thread {2 * rounds * 50:.0f} statements/s at 50 nodes (2 a round), "
                            f"takeover thread as many",
               "bound": "ours, not the issue's"},
        shown=("per_node", "rows_written", "from_code", "bound"),
    )


def run(options: Options) -> list[Figure]:
    """Measure the suite's figures on one cluster of 3 child nodes (see the module docstring)."""
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    if options.quick:
        progress(f"--quick: lease {sizes.lease_s:g} s, heartbeat {sizes.heartbeat_s:g} s, "
                 f"margin {sizes.margin_s:g} s (not the defaults), small sizes")
    with _cluster(sizes, progress) as bench:
        figures = [bench_lease_load(bench, progress), bench_hop(bench, progress), bench_failover(bench, progress)]
        figures += bench_drain(bench, progress)
    return figures
