"""The ``state`` suite: durable agents on ``PgStateStore`` against raw psycopg, side by side.

One embedded PostgreSQL (fsync on) in a temporary directory, or
``MISTERSMITH_DATABASE_URL`` (its role needs CREATEDB), as in the journal
suite; each figure gets a fresh migrated database. Threads run free (the
figures are I/O). Both sides of a figure run in interleaved rounds (ours
first, then theirs first...); an ask figure is the median of the rounds'
p50s, the write-ahead figure the p50 of all its samples.

- ``durable ask p50``: ``Runtime.ask`` to a durable agent (``bench-state``,
  Runtime on ``PgStateStore``) whose handler replaces its 1 KB state, so every
  ask commits 1 KB before it replies. Baseline: a raw psycopg upsert of the same
  1 KB JSON row into a plain table, then ``commit``, on one connection. The
  second row is the same figure against the 3 ms bound, with the same handler
  on a non-durable agent as its baseline (the durable overhead).
- ``commit throughput``: ``agents`` durable agents each sent ``commits`` such
  commands at once (``Runtime.send``), until an ask to each says all are done;
  commits per second. Baseline: raw psycopg, the same rows upserted
  ``agents`` at a time (one ``unnest`` statement, one transaction), repeated.
- ``recovery``: a Runtime on ``PgStateStore`` with ``agents`` durable agents of
  10 KB state each is closed (and its store); timed: a new ``PgStateStore``, a
  new Runtime, ``Runtime.recover`` of the registry records a journal would hold
  (every agent respawned with its id, one after another; their activations taken
  in one transaction first: ``PgStateStore.prefetch``), then one
  ask to each that answers with the size of the state it holds (checked).
- ``effect overhead``: the p50 of an ask whose handler calls
  ``self.effect(new key, fn)`` minus the p50 of the same handler calling ``fn``
  directly (nothing in ``self.state`` changes); baseline: the p50 of one
  ``PgStateStore.commit`` of 1 KB from a plain thread.
- ``write-ahead``: p50 of ``PgStateStore.commit`` of 1 KB (ours) vs the
  journal's spool: append a 1 KB record and wait until it is fsync'd; the raw
  floor (a plain file ``write`` + ``os.fdatasync``) is in the notes. The issue
  sets no target for it: the bound shown is the durable ask's 3 ms budget,
  which a commit must fit in; the ratio is the figure to read.

Run it with ``python -m mistersmith.bench state``.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

from mistersmith import Agent, Runtime, command
from mistersmith.history import AgentRecord, RecoveryPlan
from mistersmith.journal import PgStateStore
from mistersmith.journal.spool import Spool

from ._harness import ASK_TIMEOUT_S, alternate, in_order, quiet_logs
from ._options import Options, Progress
from ._pg import Databases, workspace
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "BenchState", "Sizes", "run"]

KIND = "bench-state"
_FILL = "x" * (64 * 1024)
_EMPTY_STATE = len(b'{"blob":""}')


def state_of(n: int, state_bytes: int) -> dict[str, str]:
    """A state whose JSON is exactly ``state_bytes`` long, different for each ``n``."""
    return {"blob": f"{n:012d}" + _FILL[: state_bytes - _EMPTY_STATE - 12]}


def _trivial(key: str) -> int:
    return len(key)


class BenchState(Agent):
    """The suite's durable kind. Handlers run in the agent's thread; none raises."""

    kind = KIND
    durable = True

    @command("put")
    def put(self, n: int, state_bytes: int) -> int:
        """Replace the whole state (``state_bytes`` of JSON); a durable agent commits it before replying."""
        self.state = state_of(n, state_bytes)
        return n

    @command("size")
    def size(self) -> int:
        """The JSON size of the state held (changes nothing, so nothing is committed)."""
        return len(orjson.dumps(self.state))

    @command("effect")
    def via_effect(self, key: str) -> int:
        return int(self.effect(key, _trivial, key))

    @command("direct")
    def direct(self, key: str) -> int:
        return _trivial(key)


@dataclass(frozen=True, slots=True)
class Sizes:
    warmup: int
    ask_rounds: int
    asks_per_round: int
    agents: int
    commits: int
    throughput_rounds: int
    recovery_agents: int
    recovery_rounds: int
    writes: int


FULL = Sizes(warmup=50, ask_rounds=10, asks_per_round=200, agents=100, commits=100, throughput_rounds=3,
             recovery_agents=1_000, recovery_rounds=2, writes=1_000)
QUICK = Sizes(warmup=10, ask_rounds=2, asks_per_round=30, agents=10, commits=10, throughput_rounds=1,
              recovery_agents=20, recovery_rounds=1, writes=50)

STATE_BYTES = 1024
RECOVERY_STATE_BYTES = 10 * 1024

_RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw_states (
    agent_id text PRIMARY KEY, version bigint NOT NULL, state jsonb NOT NULL, bytes integer NOT NULL)
"""
_RAW_UPSERT = """
INSERT INTO bench_raw_states AS s (agent_id, version, state, bytes) VALUES (%s, %s, %s::jsonb, %s)
ON CONFLICT (agent_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, bytes = EXCLUDED.bytes
"""
_RAW_BATCH = """
INSERT INTO bench_raw_states AS s (agent_id, version, state, bytes)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::jsonb[], %s::int[])
ON CONFLICT (agent_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, bytes = EXCLUDED.bytes
"""


def _raw_connection(conninfo: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(conninfo)
    conn.execute(_RAW_TABLE)
    conn.commit()
    return conn


def _runtime(store: PgStateStore, node_id: str) -> Runtime:
    return Runtime(node_id=node_id, state_store=store, kinds={KIND: BenchState})


def _us(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1_000


# -- ask --------------------------------------------------------------------------------------


_Next = Callable[[], int]  # the next n: every ask (and every raw row) carries a new state


def _asks(rt: Runtime, agent: str, n: int, next_n: _Next) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        payload = {"n": next_n(), "state_bytes": STATE_BYTES}
        t0 = time.perf_counter_ns()
        rt.ask(agent, "put", payload, timeout=ASK_TIMEOUT_S)
        out.append(_us(t0))
    return out


def _upserts(conn: psycopg.Connection[Any], agent: str, n: int, next_n: _Next) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        version = next_n()
        t0 = time.perf_counter_ns()
        data = orjson.dumps(state_of(version, STATE_BYTES))
        conn.execute(_RAW_UPSERT, (agent, version, data.decode(), len(data)))
        conn.commit()
        out.append(_us(t0))
    return out


def bench_ask(dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    conninfo = dbs.fresh()
    store = PgStateStore(conninfo)
    rt = _runtime(store, "bench-state-ask")
    conn = _raw_connection(conninfo)
    sides: dict[str, list[float]] = {"durable": [], "plain": [], "raw": []}
    p50s: dict[str, list[float]] = {"durable": [], "plain": [], "raw": []}
    next_n = itertools.count(1).__next__
    n = sizes.asks_per_round
    try:
        for i, ours_first in alternate(sizes.ask_rounds):
            progress(f"ask round {i + 1}/{sizes.ask_rounds}: {n} asks durable, plain, raw upserts")
            durable = rt.spawn(KIND)
            plain = rt.spawn(KIND, durable=False)
            try:
                _asks(rt, durable, sizes.warmup, next_n)
                _asks(rt, plain, sizes.warmup, next_n)
                _upserts(conn, f"raw-{i}", sizes.warmup, next_n)
                mine, other = in_order(ours_first, lambda: _asks(rt, durable, n, next_n),
                                       lambda: _upserts(conn, f"raw-{i}", n, next_n))
                round_plain = _asks(rt, plain, n, next_n)
            finally:
                rt.stop(durable)
                rt.stop(plain)
            for side, samples in (("durable", mine), ("plain", round_plain), ("raw", other)):
                sides[side] += samples
                p50s[side].append(percentile(samples, 50))
        stats = store.stats()
    finally:
        conn.close()
        rt.close()
        store.close()
    ms = {side: statistics.median(values) / 1000 for side, values in p50s.items()}
    p99 = {side: percentile(values, 99) / 1000 for side, values in sides.items()}
    common = {"state_bytes": STATE_BYTES, "rounds": sizes.ask_rounds, "asks_per_round": n, "p99": p99["durable"],
              "commits": stats["commits"], "mean_batch_size": stats["mean_batch_size"]}
    return [
        Figure(key="durable_ask_p50", name="durable ask p50, 1 KB change", unit="ms", ours=ms["durable"],
               baseline=ms["raw"], target=Target("<=", 2.0, relative=True),
               extra={**common, "baseline_p99": p99["raw"], "baseline_is": "raw upsert+commit"},
               shown=("p99", "baseline_p99", "baseline_is")),
        Figure(key="durable_ask_p50_abs", name="durable ask p50 vs non-durable", unit="ms", ours=ms["durable"],
               baseline=ms["plain"], target=Target("<=", 3.0, relative=False),
               extra={**common, "baseline_p99": p99["plain"], "overhead_ms": round(ms["durable"] - ms["plain"], 3),
                      "baseline_is": "same handler, not durable"},
               shown=("overhead_ms", "baseline_is")),
    ]


# -- commit throughput ------------------------------------------------------------------------


def _throughput_ours(conninfo: str, agents: int, commits: int, base: int, batches: list[float]) -> float:
    """``agents`` durable agents, each sent ``commits`` state changes at once; commits per second.

    Appends the mean group-commit batch (commits per transaction) to ``batches``."""
    store = PgStateStore(conninfo)
    rt = _runtime(store, f"bench-state-tp-{base}")
    try:
        ids = [rt.spawn(KIND, f"tp-{base}-{a}") for a in range(agents)]
        for agent in ids:  # activated, one committed version each: the steady state
            rt.ask(agent, "put", {"n": 0, "state_bytes": STATE_BYTES}, timeout=ASK_TIMEOUT_S)
        before = store.stats()
        send = rt.send
        t0 = time.perf_counter()
        for c in range(1, commits + 1):
            payload = {"n": base + c, "state_bytes": STATE_BYTES}
            for agent in ids:
                send(agent, "put", payload)
        for agent in ids:
            rt.ask(agent, "size", timeout=ASK_TIMEOUT_S * 6)
        elapsed = time.perf_counter() - t0
        after = store.stats()
    finally:
        rt.close()
        store.close()
    done = int(after["commits"]) - int(before["commits"])
    if done != agents * commits:
        raise RuntimeError(f"the store counted {done:,} commits, not {agents * commits:,}")
    batches.append(done / max(1, int(after["batches"]) - int(before["batches"])))
    return done / elapsed


def _throughput_raw(conninfo: str, agents: int, commits: int, base: int) -> float:
    """The same rows, ``agents`` per ``unnest`` upsert, one transaction each; rows per second."""
    ids = [f"raw-{base}-{a}" for a in range(agents)]
    with _raw_connection(conninfo) as conn:
        t0 = time.perf_counter()
        for c in range(1, commits + 1):
            data = [orjson.dumps(state_of(base + c, STATE_BYTES)).decode() for _ in ids]
            conn.execute(_RAW_BATCH, (ids, [c] * agents, data, [len(d) for d in data]))
            conn.commit()
        return agents * commits / (time.perf_counter() - t0)


def bench_throughput(dbs: Databases, sizes: Sizes, progress: Progress) -> Figure:
    ours: list[float] = []
    theirs: list[float] = []
    batch: list[float] = []
    for i, ours_first in alternate(sizes.throughput_rounds):
        progress(f"commit throughput round {i + 1}/{sizes.throughput_rounds}: "
                 f"{sizes.agents} agents x {sizes.commits} commits each side")
        conninfo = dbs.fresh()
        base = (i + 1) * 1_000_000
        mine, other = in_order(ours_first, lambda: _throughput_ours(conninfo, sizes.agents, sizes.commits, base, batch),
                               lambda: _throughput_raw(conninfo, sizes.agents, sizes.commits, base))
        ours.append(mine)
        theirs.append(other)
    figure_ours = statistics.median(ours)
    return Figure(
        key="commit_throughput", name=f"commit throughput, {sizes.agents} agents", unit="commits/s",
        ours=figure_ours, baseline=statistics.median(theirs), target=Target(">=", 0.5, relative=True),
        extra={"agents": sizes.agents, "commits_per_agent": sizes.commits, "rounds": sizes.throughput_rounds,
               "state_bytes": STATE_BYTES, "mean_batch": round(statistics.median(batch), 1),
               "absolute_target": 10_000, "over_10k": "yes" if figure_ours >= 10_000 else "NO",
               "baseline_is": f"raw unnest upsert, {sizes.agents} rows/txn"},
        shown=("mean_batch", "over_10k", "baseline_is"),
    )


# -- recovery ---------------------------------------------------------------------------------


def _records(ids: list[str]) -> tuple[AgentRecord, ...]:
    """The registry records a node's journal would hold for these running durable agents."""
    now = datetime.now(UTC)
    return tuple(AgentRecord(node_id="bench", supervisor="root", agent_id=agent, kind=KIND, restart="permanent",
                             spec={"restart": "permanent", "durable": True}, desired_state="running", state="running",
                             incarnation=0, reason=None, last_event="started", last_seq=i + 1, started_seq=i + 1,
                             updated_at=now)
                 for i, agent in enumerate(ids))


def _recovery_once(conninfo: str, agents: int, round_: int, progress: Progress) -> tuple[float, float]:
    """Seconds from a new store + Runtime to every agent answering, and of those the spawns'."""
    ids = [f"rec-{round_}-{a:05d}" for a in range(agents)]
    store = PgStateStore(conninfo)
    rt = _runtime(store, f"bench-state-rec-{round_}")
    try:
        for agent in ids:
            rt.spawn(KIND, agent)
            rt.send(agent, "put", {"n": 1, "state_bytes": RECOVERY_STATE_BYTES})
        for agent in ids:
            rt.ask(agent, "size", timeout=ASK_TIMEOUT_S * 6)
    finally:
        rt.close()
        store.close()
    progress(f"  {agents:,} agents of {RECOVERY_STATE_BYTES // 1024} KB committed and closed; recovering")
    t0 = time.perf_counter()
    store = PgStateStore(conninfo)
    rt = _runtime(store, f"bench-state-rec-{round_}")  # the same node id: a node restarted
    try:
        report = rt.recover(RecoveryPlan(_records(ids), ()))  # what journal.recover() hands the runtime
        if len(report.respawned) != len(ids):
            raise RuntimeError(f"recovery respawned {len(report.respawned)} of {len(ids)} agents: {report.failed[:3]}")
        spawned = time.perf_counter() - t0
        for agent in ids:
            size = rt.ask(agent, "size", timeout=ASK_TIMEOUT_S)
            if size != RECOVERY_STATE_BYTES:
                raise RuntimeError(f"agent {agent} came back with {size} bytes of state, not {RECOVERY_STATE_BYTES}")
        elapsed = time.perf_counter() - t0
    finally:
        rt.close()
        store.close()
    return elapsed, spawned


def bench_recovery(dbs: Databases, sizes: Sizes, progress: Progress) -> Figure:
    took: list[float] = []
    spawns: list[float] = []
    for i in range(sizes.recovery_rounds):
        progress(f"recovery round {i + 1}/{sizes.recovery_rounds}: {sizes.recovery_agents:,} agents")
        elapsed, spawned = _recovery_once(dbs.fresh(), sizes.recovery_agents, i, progress)
        took.append(elapsed)
        spawns.append(spawned)
    n = sizes.recovery_agents
    return Figure(
        key="recovery_s", name=f"recovery of {n:,} agents, 10 KB each", unit="s", ours=statistics.median(took),
        baseline=None, target=Target("<=", 2.0, relative=False),
        extra={"agents": n, "state_bytes": RECOVERY_STATE_BYTES, "rounds": sizes.recovery_rounds,
               "spawns_s": round(statistics.median(spawns), 3), "per_agent_ms": round(statistics.median(took) / n * 1000, 3),
               "all_rounds_s": " / ".join(f"{t:.2f}" for t in took), "note": "Runtime.recover(), activations prefetched"},
        shown=("per_agent_ms", "spawns_s", "note"),
    )


# -- effect overhead and the write-ahead place --------------------------------------------------


def _commit_p50s(store: PgStateStore, agent: str, n: int) -> list[float]:
    act = store.activate(agent, "bench-state-writes")
    out: list[float] = []
    for v in range(act.version + 1, act.version + n + 1):
        data = orjson.dumps(state_of(v, STATE_BYTES))
        t0 = time.perf_counter_ns()
        store.commit(agent, act.epoch, v, data, node_id="bench-state-writes")
        out.append(_us(t0))
    return out


def _spool_appends(spool: Spool, n: int) -> list[float]:
    record = orjson.dumps(state_of(0, STATE_BYTES))
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        if not spool.wait_durable(spool.append(record), ASK_TIMEOUT_S):
            raise RuntimeError("the spool did not make a record durable within 10 s")
        out.append(_us(t0))
    return out


def _fdatasyncs(path: Path, n: int) -> list[float]:
    record = orjson.dumps(state_of(0, STATE_BYTES)) + b"\n"
    out: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            os.write(fd, record)
            os.fdatasync(fd)
            out.append(_us(t0))
    finally:
        os.close(fd)
    return out


def _ask_p50(rt: Runtime, agent: str, cmd: str, n: int, base: int) -> float:
    out: list[float] = []
    for i in range(n):
        payload = {"key": f"k-{base + i}"}
        t0 = time.perf_counter_ns()
        rt.ask(agent, cmd, payload, timeout=ASK_TIMEOUT_S)
        out.append(_us(t0))
    return percentile(out, 50)


def bench_writes(home: Path, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    conninfo = dbs.fresh()
    store = PgStateStore(conninfo)
    rt = _runtime(store, "bench-state-effect")
    spool = Spool(home / "spool")
    spool.open()
    commit: list[float] = []
    appended: list[float] = []
    floor: list[float] = []
    effect_p50: list[float] = []
    direct_p50: list[float] = []
    try:
        progress(f"write-ahead: {sizes.writes} x PgStateStore commit, spool append+fsync, file fdatasync")
        _commit_p50s(store, "writes", sizes.warmup)
        _spool_appends(spool, sizes.warmup)
        chunk = max(1, sizes.writes // 10)
        for _, ours_first in alternate(10):
            mine, other = in_order(ours_first, lambda: _commit_p50s(store, "writes", chunk),
                                   lambda: _spool_appends(spool, chunk))
            commit += mine
            appended += other
            floor += _fdatasyncs(home / "floor.log", chunk)
        progress(f"effect overhead: {sizes.ask_rounds} rounds x {sizes.asks_per_round} asks with and without effect()")
        agent = rt.spawn(KIND)
        n = sizes.asks_per_round
        _ask_p50(rt, agent, "effect", sizes.warmup, 0)
        _ask_p50(rt, agent, "direct", sizes.warmup, 0)
        for i, ours_first in alternate(sizes.ask_rounds):
            base = (i + 1) * 1_000_000
            mine_p50, other_p50 = in_order(ours_first, lambda: _ask_p50(rt, agent, "effect", n, base),
                                           lambda: _ask_p50(rt, agent, "direct", n, base))
            effect_p50.append(mine_p50)
            direct_p50.append(other_p50)
        effects = store.stats()["effects"]
    finally:
        spool.close()
        rt.close()
        store.close()
    commit_ms = percentile(commit, 50) / 1000
    spool_ms = percentile(appended, 50) / 1000
    effect_ms = statistics.median(effect_p50) / 1000
    direct_ms = statistics.median(direct_p50) / 1000
    return [
        Figure(key="effect_overhead_p50", name="effect() overhead p50", unit="ms", ours=effect_ms - direct_ms,
               baseline=commit_ms, target=Target("<=", 1.0, relative=True),
               extra={"with_effect": effect_ms, "direct": direct_ms, "effects_recorded": effects,
                      "rounds": sizes.ask_rounds, "asks_per_round": n, "baseline_is": "PgStateStore commit p50"},
               shown=("with_effect", "direct", "baseline_is")),
        Figure(key="write_ahead_p50", name="1 KB write-ahead p50, PgStateStore", unit="ms", ours=commit_ms,
               baseline=spool_ms, target=Target("<=", 3.0, relative=False),  # no issue target: the ask's budget
               extra={"p99": percentile(commit, 99) / 1000, "baseline_p99": percentile(appended, 99) / 1000,
                      "fdatasync_p50": percentile(floor, 50) / 1000, "writes": len(commit),
                      "baseline_is": "spool append+fsync"},
               shown=("p99", "baseline_p99", "fdatasync_p50", "baseline_is")),
    ]


def run(options: Options) -> list[Figure]:
    """Measure the suite's figures (threads run free: every figure includes I/O)."""
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    figures: list[Figure] = []
    with quiet_logs(), workspace() as (home, dbs):
        figures += bench_ask(dbs, sizes, progress)
        figures.append(bench_throughput(dbs, sizes, progress))
        figures += bench_writes(home, dbs, sizes, progress)
        figures.append(bench_recovery(dbs, sizes, progress))
    return figures

