"""The ``faults`` suite (issue 15, section 6): the node under real faults, at the issue's sizes.

Each scenario is a module of this package, shared with ``tests/faults/``
(which runs them small, in CI, and asserts every invariant); here they run
at the issue's sizes and each prints its figures:

1. ``_fault_kill``: ``kill -9`` of the node in the middle of 10,000
   acknowledged NATS commands to 50 agents: acknowledged events lost (0),
   agents recovered (all 50), seconds from the kill until all answer.
2. ``_fault_nats``: the nats-server killed, down 10 s, started again under
   load: the node reconnects within 5 s of its return; JetStream tasks lost (0).
3. ``_fault_pg``: PostgreSQL (a server of the suite's own) stopped 30 s under
   load: events lost or written twice (0).
4. ``_fault_disk``: the spool's disk full (an injected ENOSPC): spawns
   accepted while it is full (0: each refused at once), events lost (0).
5. ``_fault_fuzz``: 10,000 fuzzed NATS payloads and 10,000 fuzzed ``/mcp``
   bodies: requests unanswered or out of spec (0), RSS growth (<= 10 %).
6. ``_fault_limits``: the 1,001st SSE stream (503 with Retry-After); a flood
   from one client: nothing past its token bucket answered (all 429).

Every route, tool and subject x every scope is ``tests/web/test_web_scopes.py``
and ``tests/test_node_nats_scopes.py`` (exact outcomes, in CI; nothing to time).

The servers: one nats-server of the suite's own, PostgreSQL embedded (or
``MISTERSMITH_DATABASE_URL``, whose role needs CREATEDB) with a fresh
database per scenario, and for fault 3 always an embedded server of its own
(it is stopped). Run it with ``python -m mistersmith.bench faults``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._fault_disk import DiskSizes, fill_the_spool_disk
from ._fault_fuzz import FUZZ_ENV, FuzzSizes, fuzz
from ._fault_kill import KillSizes, kill_node_mid_load
from ._fault_limits import LimitSizes, limits
from ._fault_nats import RECONNECT_TARGET_S, NatsSizes, kill_nats_mid_load
from ._fault_node import ServeChild
from ._fault_pg import PgSizes, stop_postgres_mid_load
from ._harness import quiet_logs
from ._options import Options, Progress
from ._pg import Databases
from ._report import Figure, Target

__all__ = ["FULL", "QUICK", "Sizes", "run"]

ZERO = Target("<=", 0, relative=False)


@dataclass(frozen=True, slots=True)
class Sizes:
    kill: KillSizes
    nats: NatsSizes
    pg: PgSizes
    disk: DiskSizes
    fuzz: FuzzSizes
    limits: LimitSizes


FULL = Sizes(
    kill=KillSizes(commands=10_000, agents=50, fail_every=25),
    nats=NatsSizes(agents=50, before_s=5.0, down_s=10.0, after_s=5.0),
    pg=PgSizes(agents=50, down_s=30.0, before_s=3.0, after_s=3.0, spawns=1),
    disk=DiskSizes(before=1_000, refused=100, sync_timeout_s=1.0),
    fuzz=FuzzSizes(nats=10_000, mcp=10_000, warmup=1_000),
    limits=LimitSizes(max_streams=1_000, rate_s=3.0, connections=32),
)
QUICK = Sizes(
    kill=KillSizes(commands=200, agents=4, fail_every=10),
    nats=NatsSizes(agents=2, before_s=0.5, down_s=1.0, after_s=0.5),
    pg=PgSizes(agents=2, down_s=1.0, before_s=0.5, after_s=0.5, spawns=0),
    disk=DiskSizes(before=3, refused=3),
    fuzz=FuzzSizes(nats=50, mcp=50, warmup=10),
    limits=LimitSizes(max_streams=20, rate_s=0.5, connections=4),
)


def _figures_kill(home: Path, nats_url: str, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    s = sizes.kill
    progress(f"1. kill -9 of the node in the middle of {s.commands:,} acknowledged commands to {s.agents} agents")
    r = kill_node_mid_load(home / "kill", nats_url, dbs.fresh(), s)
    lost = len(r.events_lost) + sum(map(len, r.durable_lost.values())) + len(r.durable_twice)
    extra: dict[str, float | int | str] = {"events": r.events_seen, "recovered": r.recovered, "agents": r.agents, "acked": r.acked,
             "restart_s": round(r.restart_s, 2), "back_s": round(r.back_s, 2), "problems": "; ".join(r.problems())}
    shown = ("events", "recovered", "back_s")
    return [
        Figure("kill_lost", "kill -9: acknowledged events and commits lost", "", lost, None, ZERO, extra, shown),
        Figure("kill_recovered", "kill -9: permanent agents back", "agents", r.recovered, None,
               Target(">=", s.agents, relative=False), extra, ("agents", "back_s")),
        Figure("kill_back_s", "kill -9: from the kill until every agent answers", "s", round(r.back_s, 2), None,
               Target("<=", 30.0, relative=False), extra, ("restart_s",)),
    ]


def _figures_nats(home: Path, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    from mistersmith.embedded.nats import EmbeddedNats

    s = sizes.nats
    progress(f"2. nats-server killed, down {s.down_s:g} s, started again under load ({s.agents} agents, tasks)")
    with EmbeddedNats(home / "nats-2") as server:
        r = kill_nats_mid_load(home / "nats", server, dbs.fresh(), s)
    extra: dict[str, float | int | str] = {"down_s": round(r.down_s, 2), "tasks_acked": r.tasks_acked, "tasks_done": r.tasks_done,
             "retried": r.retried_tasks, "answering": f"{r.answering_after}/{r.agents}",
             "problems": "; ".join(r.problems())}
    return [
        Figure("nats_reconnect_s", "nats-server back: the node reconnected after", "s", round(r.reconnect_s, 2),
               None, Target("<=", RECONNECT_TARGET_S, relative=False), extra, ("down_s",)),
        Figure("nats_tasks_lost", "nats-server killed: acknowledged JetStream tasks lost", "",
               len(r.tasks_lost) + len(r.tasks_wrong), None, ZERO, extra, ("tasks_acked", "retried")),
    ]


def _figures_pg(home: Path, nats_url: str, sizes: Sizes, progress: Progress) -> list[Figure]:
    from mistersmith.embedded.postgres import EmbeddedPostgres

    s = sizes.pg
    progress(f"3. PostgreSQL (the suite's own) stopped {s.down_s:g} s under load ({s.agents} agents)")
    pg = EmbeddedPostgres(home / "pg-3", durable=True)
    pg.start()
    try:
        r = stop_postgres_mid_load(home / "pg", pg, nats_url, s)
    finally:
        pg.stop()
    extra: dict[str, float | int | str] = {"down_s": round(r.down_s, 2), "events": r.events_seen, "during_outage": r.events_during_outage,
             "journaled": r.journaled, "twice": r.seq_repeats + r.duplicate_event_ids,
             "caught_up_s": round(r.caught_up_s, 2), "spawns_refused": len(r.spawn_refusals),
             "problems": "; ".join(r.problems())}
    bad = len(r.events_lost) + r.seq_holes + r.seq_repeats + r.duplicate_event_ids
    return [Figure("pg_events_lost", "PostgreSQL stopped: events lost or written twice", "", bad, None, ZERO, extra,
                   ("down_s", "events", "during_outage", "caught_up_s"))]


def _figures_disk(home: Path, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    s = sizes.disk
    progress(f"4. the spool's disk full (injected ENOSPC): {s.before:,} agents acknowledged, {s.refused} spawns tried")
    r = fill_the_spool_disk(home / "disk", dbs.fresh(), s)
    extra: dict[str, float | int | str] = {"refused": r.refused, "refusal_p50_ms": round(r.refusal_p50_ms, 3), "emitted": r.emitted,
             "journaled": r.journaled, "problems": "; ".join(r.problems())}
    return [
        Figure("disk_accepted", "spool disk full: spawns accepted (each must be refused)", "",
               len(r.accepted_while_full) + len(r.started_refused), None, ZERO, extra,
               ("refused", "refusal_p50_ms")),
        Figure("disk_lost", "spool disk full: acknowledged events lost", "", len(r.lost), None, ZERO, extra,
               ("emitted", "journaled")),
    ]


def _figures_fuzz(home: Path, nats_url: str, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    s = sizes.fuzz
    progress(f"5. {s.nats:,} fuzzed NATS payloads and {s.mcp:,} fuzzed /mcp bodies")
    node = ServeChild(home / "fuzz", "fault-fuzz", nats_url, dbs.fresh(), FUZZ_ENV)
    node.start()
    try:
        r = fuzz(node, nats_url, s)
    finally:
        node.kill()
    bad = len(r.nats_unanswered) + len(r.mcp_bad) + (0 if r.alive else 1)
    extra: dict[str, float | int | str] = {"nats": r.nats_sent, "mcp": r.mcp_sent, "rss_warm_kib": r.rss_warm_kib, "rss_end_kib": r.rss_end_kib,
             "problems": "; ".join(r.problems())}
    return [
        Figure("fuzz_unanswered", "fuzz: crashes, unanswered or out-of-spec answers", "", bad, None, ZERO, extra,
               ("nats", "mcp")),
        Figure("fuzz_rss_growth", "fuzz: node RSS growth (after warm-up to the end)", "%",
               round(100 * r.rss_growth, 2), None, Target("<=", 10.0, relative=False), extra,
               ("rss_warm_kib", "rss_end_kib")),
    ]


def _figures_limits(home: Path, nats_url: str, dbs: Databases, sizes: Sizes, progress: Progress) -> list[Figure]:
    s = sizes.limits
    progress(f"6. {s.max_streams:,} SSE streams and one more; one client flooding for {s.rate_s:g} s")
    env = {"MISTERSMITH_HTTP_SSE_MAX_STREAMS": str(s.max_streams)}
    node = ServeChild(home / "limits", "fault-limits", nats_url, dbs.fresh(), env)
    node.start()
    try:
        r = limits(node.ready["http_url"], s)
    finally:
        node.kill()
    extra: dict[str, float | int | str] = {"open": r.streams_open, "status": r.next_status, "retry_after": str(r.next_retry_after),
             "rate_rps": round(r.rate_per_s), "answered_429": r.statuses[429], "passed": r.statuses[200],
             "problems": "; ".join(r.problems(s.max_streams))}
    ok_503 = 1 if r.next_status == 503 and r.next_retry_after and r.streams_open == s.max_streams else 0
    over = max(0, int(r.statuses[200] - r.allowed_at_most)) + r.retry_after_missing + (0 if r.statuses[429] else 1)
    return [
        Figure("sse_over_limit_503", f"stream {s.max_streams + 1:,}: 503 with Retry-After", "yes", ok_503, None,
               Target(">=", 1, relative=False), extra, ("open", "status", "retry_after")),
        Figure("rate_flood_passed", "one client's flood: answered past its bucket (all 429)", "", over, None, ZERO,
               extra, ("rate_rps", "answered_429", "passed")),
    ]


def run(options: Options) -> list[Figure]:
    from mistersmith.embedded.nats import EmbeddedNats

    sizes = QUICK if options.quick else FULL
    progress = options.progress
    home = Path(tempfile.mkdtemp(prefix="ms-bench-faults-"))
    home.chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
    figures: list[Figure] = []
    try:
        with quiet_logs(), EmbeddedNats(home / "nats-shared") as server:
            dbs = Databases(home)
            try:
                figures += _figures_kill(home, server.url, dbs, sizes, progress)
                figures += _figures_nats(home, dbs, sizes, progress)
                figures += _figures_pg(home, server.url, sizes, progress)
                figures += _figures_disk(home, dbs, sizes, progress)
                figures += _figures_fuzz(home, server.url, dbs, sizes, progress)
                figures += _figures_limits(home, server.url, dbs, sizes, progress)
            finally:
                dbs.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for figure in figures:
        problems = figure.extra.get("problems")
        if problems:
            progress(f"  {figure.key}: {problems}")
    return figures
