"""The ``journal`` suite: the PostgreSQL journal against raw psycopg, side by side.

Everything runs against one PostgreSQL with ``fsync`` on: an embedded server in
a temporary directory, or ``MISTERSMITH_DATABASE_URL`` (its role needs
CREATEDB: each round gets a fresh database). The spool is fsync'd too.

- ``journal write throughput``: the journal's sink fed as the event bus feeds
  it (``write`` for every event, in order), with ``sync`` (wait until durable)
  every ``group`` events, as ``group`` concurrently emitting agent threads
  would make it; the clock stops when ``Journal.flush`` says every event is in
  PostgreSQL. The baseline is one raw psycopg binary ``COPY`` of the same rows
  (built before the clock starts) into the same table, in a fresh database.
- ``emit throughput``: ``EventBus.emit`` from ``emit_threads`` threads on a
  journaled bus, each emit waiting for its own event to be durable, until all
  are in PostgreSQL; ``spool_only`` is the same threads on the spool alone.
- ``replay``: ``Journal.replay()`` over every event (``SupervisionEvent``
  objects, server-side cursor) vs a raw psycopg server-side cursor reading the
  same query's rows (tuples), same batch size.
- ``restart latency p50``: from ``fail`` until ``ping`` answers from the new
  incarnation, on a Runtime journaled durably; the baseline is the same
  agent on a Runtime without the journal.

Run it with ``python -m mistersmith.bench journal``.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from mistersmith import AgentFailedError, Runtime, SupervisorSpec
from mistersmith.journal import Journal, JournalConfig, PoolConfig
from mistersmith.journal.codec import encode_line
from mistersmith.journal.replay import Replay, ReplayFilter
from mistersmith.journal.spool import Spool
from mistersmith.supervisors import EventBus, SupervisionEvent

from ._harness import ASK_TIMEOUT_S, alternate, in_order, quiet_logs
from ._options import Options
from ._pg import Databases, copy_rows, event_rows, workspace
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]

_SPEC = {"restart": "permanent", "config": {"model": "small", "retries": 3}, "shutdown_s": 5.0,
         "command_timeout_s": 30.0, "mailbox_size": 10_000}


@dataclass(frozen=True, slots=True)
class Sizes:
    write_events: int
    group: int
    write_rounds: int
    emit_events: int
    emit_threads: int
    replay_events: int
    replay_rounds: int
    restarts: int


FULL = Sizes(write_events=200_000, group=64, write_rounds=3, emit_events=50_000, emit_threads=32,
             replay_events=1_000_000, replay_rounds=3, restarts=500)
QUICK = Sizes(write_events=5_000, group=64, write_rounds=1, emit_events=2_000, emit_threads=8,
              replay_events=20_000, replay_rounds=1, restarts=20)


def _config(conninfo: str) -> JournalConfig:
    return JournalConfig(database_url=conninfo, pool=PoolConfig(min_size=1, max_size=4))


# -- write throughput ----------------------------------------------------------------


def _events(n: int, agents: int) -> list[SupervisionEvent]:
    bus = EventBus("bench-node")
    return [
        bus.emit("restarted", supervisor="root/workers", agent_id=f"agent-{i % agents}", kind="worker",
                 restart_count=i, data=_SPEC)
        for i in range(n)
    ]


def _write_ours(home: Path, conninfo: str, events: list[SupervisionEvent], group: int) -> float:
    """The sink fed as the bus feeds it, by ``group`` concurrent emitters' worth per fsync."""
    journal = Journal.open(home / f"node-{uuid.uuid4().hex[:6]}", _config(conninfo))
    try:
        write, sync = journal.sink.write, journal.sink.sync
        last = len(events) - 1
        t0 = time.perf_counter()
        for i, event in enumerate(events):
            write(event)
            if i % group == group - 1 or i == last:
                sync(event)
        if not journal.flush(600):
            raise RuntimeError("the journal did not ship the benchmark's events within 600 s")
        return len(events) / (time.perf_counter() - t0)
    finally:
        journal.close()


def _together(threads: int, name: str, body: Callable[[int], None]) -> float:
    """Run ``body(t)`` in ``threads`` threads released at once; returns the ``perf_counter`` of the
    release, once every thread has ended."""
    start = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        start.wait()
        body(t)

    workers = [threading.Thread(target=run, args=(t,), name=f"{name}-{t}") for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return t0


def _emit_ours(home: Path, conninfo: str, n: int, threads: int) -> float:
    """``threads`` threads emitting on a journaled bus, each emit waiting for its fsync."""
    journal = Journal.open(home / f"node-{uuid.uuid4().hex[:6]}", _config(conninfo))
    try:
        bus = EventBus("bench-node")
        bus.add_sink(journal.sink)
        per_thread = n // threads

        def emit(t: int) -> None:
            agent = f"agent-{t}"
            for i in range(per_thread):
                bus.emit("restarted", supervisor="root/workers", agent_id=agent, kind="worker",
                         restart_count=i, data=_SPEC)

        t0 = _together(threads, "bench-emit", emit)
        if not journal.flush(600):
            raise RuntimeError("the journal did not ship the benchmark's events within 600 s")
        return per_thread * threads / (time.perf_counter() - t0)
    finally:
        journal.close()


def bench_write(home: Path, dbs: Databases, sizes: Sizes, progress: Any) -> Figure:
    ours: list[float] = []
    theirs: list[float] = []
    n = sizes.write_events
    for i, ours_first in alternate(sizes.write_rounds):
        progress(f"write round {i + 1}/{sizes.write_rounds}: {n:,} events each side")
        events = _events(n, 32)
        rows = event_rows(events)
        mine, other = in_order(
            ours_first,
            lambda: _write_ours(home, dbs.fresh(), events, sizes.group),
            lambda: copy_rows(dbs.fresh(), rows),
        )
        ours.append(mine)
        theirs.append(other)
    figure_ours = statistics.median(ours)
    return Figure(
        key="journal_write_throughput",
        name="journal write throughput",
        unit="events/s",
        ours=figure_ours,
        baseline=statistics.median(theirs),
        target=Target(">=", 0.5, relative=True),
        extra={"events": n, "events_per_fsync": sizes.group, "rounds": sizes.write_rounds,
               "absolute_target": 20_000, "over_20k": "yes" if figure_ours >= 20_000 else "NO",
               "baseline_is": "raw psycopg COPY"},
        shown=("events_per_fsync", "over_20k", "baseline_is"),
    )


def _spool_only(home: Path, n: int, threads: int) -> float:
    """The same threads appending to the spool and waiting for their fsync, without the bus."""
    spool = Spool(home / f"spool-{uuid.uuid4().hex[:6]}")
    spool.open()
    try:
        per_thread = n // threads
        record = encode_line(_events(1, 1)[0])

        def emit(t: int) -> None:
            for _ in range(per_thread):
                spool.wait_durable(spool.append(record), 60)

        t0 = _together(threads, "bench-spool", emit)
        return per_thread * threads / (time.perf_counter() - t0)
    finally:
        spool.close()


def bench_emit(home: Path, dbs: Databases, sizes: Sizes, progress: Any) -> Figure:
    """``EventBus.emit`` from many threads, each waiting for its own event's fsync.

    ``spool_only`` is the journal's part of it: the same threads appending to
    the spool and waiting for durability, without the event bus.
    """
    n = sizes.emit_events - sizes.emit_events % sizes.emit_threads
    progress(f"emit throughput: {n:,} events from {sizes.emit_threads} threads")
    rate = _emit_ours(home, dbs.fresh(), n, sizes.emit_threads)
    spool_only = _spool_only(home, n, sizes.emit_threads)
    return Figure(
        key="journal_emit_throughput",
        name=f"emit throughput, {sizes.emit_threads} threads",
        unit="events/s",
        ours=rate,
        baseline=None,
        target=Target(">=", 20_000, relative=False),
        extra={"events": n, "threads": sizes.emit_threads, "spool_only": round(spool_only),
               "note": "each emit waits for its own fsync"},
        shown=("spool_only", "note"),
    )


# -- replay ---------------------------------------------------------------------------


def _load(conninfo: str, n: int, progress: Any) -> None:
    chunk = 100_000
    for start in range(0, n, chunk):
        copy_rows(conninfo, event_rows(_events(min(chunk, n - start), 1000)))
        progress(f"  loaded {min(n, start + chunk):,} / {n:,} events")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE supervision_events")


def _replay_ours(conninfo: str, itersize: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    count = 0
    for _ in Replay(conninfo, ReplayFilter(), itersize=itersize):
        count += 1
    return time.perf_counter() - t0, count


def _replay_raw(conninfo: str, itersize: int) -> tuple[float, int]:
    query, params = ReplayFilter().query()
    t0 = time.perf_counter()
    count = 0
    with psycopg.connect(conninfo) as conn, conn.cursor(name="raw_replay") as cur:
        cur.execute(query, params)
        while rows := cur.fetchmany(itersize):
            count += len(rows)
    return time.perf_counter() - t0, count


def bench_replay(dbs: Databases, sizes: Sizes, progress: Any) -> Figure:
    conninfo = dbs.fresh()
    progress(f"replay: loading {sizes.replay_events:,} events")
    _load(conninfo, sizes.replay_events, progress)
    itersize = 2000
    _replay_raw(conninfo, itersize)  # warm the cache for both sides
    ours: list[float] = []
    theirs: list[float] = []
    for i, ours_first in alternate(sizes.replay_rounds):
        progress(f"replay round {i + 1}/{sizes.replay_rounds}")
        (t_ours, n_ours), (t_raw, n_raw) = in_order(
            ours_first, lambda: _replay_ours(conninfo, itersize), lambda: _replay_raw(conninfo, itersize)
        )
        if n_ours != sizes.replay_events or n_raw != sizes.replay_events:
            raise RuntimeError(f"replay read {n_ours:,} events and the raw cursor {n_raw:,}, not {sizes.replay_events:,}")
        ours.append(n_ours / t_ours)
        theirs.append(n_raw / t_raw)
    return Figure(
        key="replay_throughput",
        name=f"replay of {sizes.replay_events:,} events",
        unit="events/s",
        ours=statistics.median(ours),
        baseline=statistics.median(theirs),
        target=Target(">=", 0.5, relative=True),
        extra={"events": sizes.replay_events, "itersize": itersize, "rounds": sizes.replay_rounds,
               "seconds": round(sizes.replay_events / statistics.median(ours), 2),
               "baseline_is": "raw server-side cursor"},
        shown=("seconds", "baseline_is"),
    )


# -- restart latency ------------------------------------------------------------------


def _restart_once(rt: Runtime, agent: str) -> float:
    t0 = time.perf_counter_ns()
    try:
        rt.ask(agent, "fail", timeout=ASK_TIMEOUT_S)
    except AgentFailedError:
        pass
    rt.ask(agent, "ping", timeout=ASK_TIMEOUT_S)
    return (time.perf_counter_ns() - t0) / 1e6


def bench_restart(home: Path, dbs: Databases, sizes: Sizes) -> Figure:
    root = SupervisorSpec("root", intensity=1_000_000, period_s=1.0)
    journal = Journal.open(home / "restart-node", _config(dbs.fresh()))
    journaled = Runtime(node_id="bench-restart", sinks=[journal.sink], root=root)
    plain = Runtime(root=root)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        a = journaled.spawn("echo", "journaled")
        b = plain.spawn("echo", "plain")
        for _ in range(10):
            _restart_once(journaled, a)
            _restart_once(plain, b)
        for _, ours_first in alternate(sizes.restarts):
            mine, other = in_order(ours_first, lambda: _restart_once(journaled, a), lambda: _restart_once(plain, b))
            ours.append(mine)
            theirs.append(other)
        shipped = journal.flush(60)
    finally:
        journaled.close()
        plain.close()
        journal.close()
    return Figure(
        key="journal_restart_p50",
        name="restart latency p50, durable journal",
        unit="ms",
        ours=percentile(ours, 50),
        baseline=percentile(theirs, 50),
        target=Target("<=", 5.0, relative=False),
        extra={"p99": percentile(ours, 99), "baseline_p99": percentile(theirs, 99), "restarts": len(ours),
               "all_shipped": "yes" if shipped else "no", "baseline_is": "same runtime, no journal"},
        shown=("p99", "baseline_is"),
    )


def run(options: Options) -> list[Figure]:
    """Measure the suite's three figures (threads run free: the figures include I/O)."""
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    figures: list[Figure] = []
    with quiet_logs(), workspace() as (home, dbs):
        progress(f"write throughput: {sizes.write_rounds} rounds, {sizes.group} events per fsync")
        figures.append(bench_write(home, dbs, sizes, progress))
        figures.append(bench_emit(home, dbs, sizes, progress))
        progress(f"restart latency: {sizes.restarts} crashes each side")
        figures.append(bench_restart(home, dbs, sizes))
        figures.append(bench_replay(dbs, sizes, progress))
    return figures
