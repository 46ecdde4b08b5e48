"""``NodeLease`` against a real PostgreSQL: joining, renewal, self-fencing, declaring nodes down.

Time: each lease gets a fake monotonic clock (``LeaseClock``). The lease thread
still waits in real time, for at most ``heartbeat_s`` (20 ms here), then reads
the clock; a test moves the clock with ``tick`` and waits for what the thread
did on a callback (``Recorder``: ``facts`` opens every join and renewal,
``on_event``, ``on_lost``, ``on_regained``, ``on_round``, and the warning it
logs when a renewal fails). Expiry by the *database's* clock is done the way
time does it: ``lease_until`` set in the past.

The renewal pipeline: ``facts`` is called inside a round, after the round read
its ``sent`` time and before its UPDATE. So once round k+1 has called
``facts``, round k is over. A round reads the clock once more after its UPDATE
(has it renewed for a whole lease? then it judges): if the test has moved the
clock on by then, that read sees the new time. Where it matters a test holds
the round inside ``facts`` (``tick(..., hold=True)``, then ``release``): the
thread is then at a known point, and the rounds before it are over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal.leases import LeaseConfig, NodeLease
from mistersmith.journal.migrate import migrate

WAIT_S = 10.0
CONFIG = LeaseConfig(lease_s=30.0, heartbeat_s=0.02, margin_s=10.0)
"""Fake seconds: the lease is 30, a node fences itself 20 after its last renewal was sent. The
database lease (real seconds) is 30 too, far longer than any test: only an UPDATE expires it."""
STEP = 8.0
"""One tick of the fake clock: a renewal each, well inside the 20 s window."""


class LeaseClock:
    """A monotonic clock that stands still until ``advance``; says when the lease thread first read it."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self.read_by_thread = threading.Event()

    def __call__(self) -> float:
        if threading.current_thread().name == "mistersmith-lease":
            self.read_by_thread.set()
        with self._lock:
            return self._now

    def advance(self, delta_s: float) -> None:
        with self._lock:
            self._now += delta_s


class Recorder:
    """Every callback of one lease, and its failed renewals (from its log), under one condition."""

    def __init__(self, node_id: str, clock: LeaseClock, agents: int = 0) -> None:
        self.node_id = node_id
        self.clock = clock
        self.agents = agents
        self.cond = threading.Condition()
        self.facts_calls = 0
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.lost: list[str] = []
        self.regained = 0
        self.rounds = 0
        self.failures = 0
        self.hold = False  # the next round waits in ``facts`` until ``release``
        self._go = threading.Event()

    def _bump(self, change: Callable[[], None]) -> None:
        with self.cond:
            change()
            self.cond.notify_all()

    def facts(self) -> dict[str, Any]:
        with self.cond:
            self.facts_calls += 1
            holding, self.hold = self.hold, False
            self.cond.notify_all()
        if holding:
            self._go.wait(WAIT_S)
            self._go.clear()
        return {"agents": self.agents, "http_url": f"http://{self.node_id}:1", "max_agents": 50}

    def release(self) -> None:
        self._go.set()

    def on_event(self, event_type: str, node_id: str, data: dict[str, Any]) -> None:
        self._bump(lambda: self.events.append((event_type, node_id, data)))

    def on_lost(self, why: str) -> None:
        self._bump(lambda: self.lost.append(why))

    def on_regained(self) -> None:
        self._bump(lambda: setattr(self, "regained", self.regained + 1))

    def on_round(self) -> None:
        self._bump(lambda: setattr(self, "rounds", self.rounds + 1))

    def failed(self) -> None:
        self._bump(lambda: setattr(self, "failures", self.failures + 1))

    def wait(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout_s)

    def of_type(self, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        with self.cond:
            return [(node, data) for kind, node, data in self.events if kind == event_type]


class _Failures(logging.Handler):
    """Counts the lease thread's "could not renew" warnings, per node."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.recorders: dict[str, Recorder] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("node %s could not renew") and record.args:
            recorder = self.recorders.get(str(record.args[0]))  # type: ignore[index]
            if recorder is not None:
                recorder.failed()


class Leases:
    """``make(conninfo, node_id)``: a lease with its own clock and recorder; all stopped after the test."""

    def __init__(self) -> None:
        self.made: list[NodeLease] = []
        self.handler = _Failures()
        logging.getLogger("mistersmith.journal.leases").addHandler(self.handler)

    def make(self, conninfo: str, node_id: str, *, config: LeaseConfig = CONFIG,
             agents: int = 0) -> tuple[NodeLease, Recorder]:
        clock = LeaseClock()
        rec = Recorder(node_id, clock, agents)
        lease = NodeLease(conninfo, node_id, config=config, facts=rec.facts, on_event=rec.on_event,
                          on_lost=rec.on_lost, on_regained=rec.on_regained, on_round=rec.on_round,
                          version="test", clock=clock)
        self.handler.recorders[node_id] = rec
        self.made.append(lease)
        return lease, rec

    def start(self, lease: NodeLease, rec: Recorder) -> None:
        """Join, then wait until the lease thread has read the clock (it times its first beat from it)."""
        lease.start()
        assert rec.clock.read_by_thread.wait(WAIT_S)

    def close(self) -> None:
        for rec in self.handler.recorders.values():
            rec.hold = False
            rec.release()
        for lease in reversed(self.made):
            lease.stop()
        logging.getLogger("mistersmith.journal.leases").removeHandler(self.handler)


@pytest.fixture
def leases() -> Iterator[Leases]:
    made = Leases()
    try:
        yield made
    finally:
        made.close()


def tick(rec: Recorder, delta_s: float = STEP, *, hold: bool = False) -> None:
    """Move the lease's clock on and wait until its thread has begun the round that falls due
    (``hold``: and keep it waiting in ``facts``, before its UPDATE, until ``rec.release()``)."""
    calls = rec.facts_calls
    rec.hold = hold
    rec.clock.advance(delta_s)
    assert rec.wait(lambda: rec.facts_calls > calls), "the lease thread did not start a round"


def row(conninfo: str, node_id: str) -> dict[str, Any] | None:
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT *, lease_until > now() AS live, lease_until - now() AS left FROM nodes WHERE node_id = %s",
            (node_id,),
        ).fetchone()


def sql(conninfo: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def expire(conninfo: str, node_id: str) -> None:
    """What time passing does to a lease nobody renews: it lies in the past by the database's clock."""
    sql(conninfo, "UPDATE nodes SET lease_until = now() - interval '1 s' WHERE node_id = %s", (node_id,))


# -- joining and renewing --------------------------------------------------------------------------


def test_join_writes_the_row_by_the_database_clock_and_emits_node_up(journal_db: str, leases: Leases) -> None:
    lease, rec = leases.make(journal_db, "A", agents=3)
    leases.start(lease, rec)

    got = row(journal_db, "A")
    assert got is not None
    assert (got["state"], got["run_id"], got["version"], got["agents"], got["max_agents"]) == (
        "up", lease.run_id, "test", 3, 50)
    assert got["http_url"] == "http://A:1" and got["down_at"] is None
    assert got["live"], "lease_until lies in the future by the database's clock"
    assert 25 < got["left"].total_seconds() <= 30
    assert rec.of_type("node_up") == [("A", {"run_id": lease.run_id, "previous_state": None})]
    assert lease.valid() and lease.state == "up"
    assert len(lease.run_id) == 32


def test_renewal_moves_lease_until_on_and_reports_the_facts(journal_db: str, leases: Leases) -> None:
    lease, rec = leases.make(journal_db, "A", agents=1)
    leases.start(lease, rec)
    joined = row(journal_db, "A")
    assert joined is not None

    rec.agents = 7
    tick(rec)
    tick(rec)  # the first renewal is over once the second has begun
    renewed = row(journal_db, "A")
    assert renewed is not None
    assert renewed["lease_until"] > joined["lease_until"]
    assert renewed["last_seen"] > joined["last_seen"]
    assert (renewed["agents"], renewed["run_id"], renewed["state"]) == (7, lease.run_id, "up")
    assert lease.renewals >= 1 and lease.failures == 0
    assert lease.valid()
    assert [kind for kind, _, _ in rec.events] == ["node_up"]
    assert rec.lost == [] and rec.rounds == 0, "not fresh for a whole lease yet: no round of judging"


def test_a_newer_run_of_the_same_node_replaces_the_older_which_then_stops_serving(
    journal_db: str, leases: Leases
) -> None:
    first, first_rec = leases.make(journal_db, "A")
    second, second_rec = leases.make(journal_db, "A")
    leases.start(first, first_rec)
    leases.start(second, second_rec)
    assert second.run_id != first.run_id
    assert second_rec.of_type("node_up") == [("A", {"run_id": second.run_id, "previous_state": "up"})]
    got = row(journal_db, "A")
    assert got is not None and got["run_id"] == second.run_id

    assert first.valid(), "nothing told the first run yet"
    tick(first_rec)
    assert first_rec.wait(lambda: bool(first_rec.lost))
    assert len(first_rec.lost) == 1 and "newer run" in first_rec.lost[0]
    assert not first.valid() and first.state == "down"
    got = row(journal_db, "A")
    assert got is not None and (got["run_id"], got["state"]) == (second.run_id, "up"), "the old run renewed nothing"
    assert second.valid() and second_rec.lost == []


def test_a_run_that_cannot_renew_fences_itself_once_then_joins_again_as_a_new_run(
    journal_db: str, leases: Leases
) -> None:
    """A frozen process (or a thread starved for longer than the margin): the clock leaps past
    ``lease_s - margin_s`` with no renewal in between."""
    lease, rec = leases.make(journal_db, "A")
    leases.start(lease, rec)
    first_run = lease.run_id
    assert lease.valid()

    rec.clock.advance(CONFIG.lease_s - CONFIG.margin_s)  # one leap: the thread had no chance to renew
    assert not lease.valid(), "valid() reads the clock itself: false before the thread has even woken"
    assert rec.wait(lambda: rec.regained == 1)
    assert len(rec.lost) == 1 and "not renewed for 20.0 s" in rec.lost[0]
    assert lease.run_id != first_run and lease.valid() and lease.state == "up"
    got = row(journal_db, "A")
    assert got is not None and (got["run_id"], got["state"]) == (lease.run_id, "up")
    assert rec.of_type("node_up")[-1] == ("A", {"run_id": lease.run_id, "previous_state": "up"})


def test_with_the_database_down_it_fences_itself_after_lease_minus_margin_and_rejoins_once_back(
    own_pg: EmbeddedPostgres, leases: Leases
) -> None:
    conninfo = own_pg.conninfo()
    migrate(conninfo)
    lease, rec = leases.make(conninfo, "A")
    leases.start(lease, rec)  # the join was sent at 0: valid until 20
    first_run = lease.run_id
    own_pg.stop()

    rec.clock.advance(STEP)
    assert rec.wait(lambda: rec.failures == 1)
    rec.clock.advance(STEP)
    assert rec.wait(lambda: rec.failures == 2)
    assert lease.valid() and rec.lost == [], "16 s after the last renewal: still inside the window"

    rec.clock.advance(4.0)  # 20: the window is over
    assert not lease.valid()
    assert rec.wait(lambda: bool(rec.lost) and rec.failures == 3), "fenced, then a join that failed"
    rec.clock.advance(STEP)
    assert rec.wait(lambda: rec.failures == 4)
    assert len(rec.lost) == 1 and rec.regained == 0 and not lease.valid()

    own_pg.start()
    tick(rec)
    assert rec.wait(lambda: rec.regained == 1)
    assert lease.valid() and lease.run_id != first_run and len(rec.lost) == 1
    got = row(conninfo, "A")
    assert got is not None and (got["run_id"], got["state"]) == (lease.run_id, "up")


def test_a_renewal_blocked_in_the_database_still_fences_the_node_in_time(journal_db: str, leases: Leases) -> None:
    """The renewal UPDATE is stuck (here: a lock on the row; in life: a partition that drops
    packets, where the socket waits for TCP's retransmission timeout). ``valid()`` turns false on
    time, but ``on_lost`` (the Cluster drops its agents there) runs in the same thread as the
    renewal, after it returns: the agents keep running past the lease while a survivor adopts them.
    leases.py ``_run``/``_round``: nothing bounds the UPDATE (no statement timeout, no watchdog)."""
    lease, rec = leases.make(journal_db, "A")
    leases.start(lease, rec)
    with psycopg.connect(journal_db) as blocker:
        blocker.execute("SELECT 1 FROM nodes WHERE node_id = 'A' FOR UPDATE")
        try:
            tick(rec)  # the renewal sent at 8 now waits for the lock
            rec.clock.advance(CONFIG.lease_s)
            assert not lease.valid()
            assert rec.wait(lambda: bool(rec.lost), timeout_s=1.0), "on_lost only after the UPDATE returned"
        finally:
            blocker.rollback()


def test_drain_says_draining_at_the_next_renewal_once(journal_db: str, leases: Leases) -> None:
    lease, rec = leases.make(journal_db, "A")
    leases.start(lease, rec)
    lease.drain()
    assert lease.state == "draining"
    tick(rec)
    tick(rec)
    tick(rec)
    got = row(journal_db, "A")
    assert got is not None and got["state"] == "draining"
    assert rec.of_type("node_draining") == [("A", {"run_id": lease.run_id})]


def test_a_new_run_that_drains_says_draining_again(journal_db: str, leases: Leases) -> None:
    lease, rec = leases.make(journal_db, "A")
    leases.start(lease, rec)
    lease.drain()
    tick(rec)
    tick(rec)
    assert len(rec.of_type("node_draining")) == 1
    rec.clock.advance(CONFIG.lease_s)  # fenced, then joined again: a new run, up and not draining
    assert rec.wait(lambda: rec.regained == 1)
    assert lease.state == "up"
    lease.drain()
    tick(rec)
    tick(rec)
    got = row(journal_db, "A")
    assert got is not None and got["state"] == "draining"
    assert [data["run_id"] for _, data in rec.of_type("node_draining")][-1] == lease.run_id
    assert len(rec.of_type("node_draining")) == 2


# -- declaring others down -----------------------------------------------------------------------


def test_a_fresh_node_declares_an_expired_one_down_exactly_once(journal_db: str, leases: Leases) -> None:
    a, a_rec = leases.make(journal_db, "A")
    b, b_rec = leases.make(journal_db, "B")
    leases.start(a, a_rec)
    leases.start(b, b_rec)
    listed = {n["node_id"]: n for n in a.nodes()}
    assert sorted(listed) == ["A", "B"]
    assert [(n["state"], n["expired"]) for n in listed.values()] == [("up", False), ("up", False)]
    assert listed["B"]["run_id"] == b.run_id and isinstance(listed["B"]["lease_until"], str)

    expire(journal_db, "B")
    listed = {n["node_id"]: n for n in a.nodes()}
    assert (listed["B"]["state"], listed["B"]["expired"]) == ("up", True)
    assert listed["A"]["expired"] is False

    for _ in range(3):  # 8, 16, 24: A has renewed without a break, but not for a whole lease yet
        tick(a_rec)
    assert a_rec.of_type("node_down") == [] and a_rec.rounds == 0
    got = row(journal_db, "B")
    assert got is not None and got["state"] == "up"

    tick(a_rec)  # 32: fresh for a lease; this round (or the end of the last one) judges
    assert a_rec.wait(lambda: a_rec.rounds >= 1)
    downs = a_rec.of_type("node_down")
    assert [(node, data["run_id"], data["declared_by"]) for node, data in downs] == [("B", b.run_id, "A")]
    got = row(journal_db, "B")
    assert got is not None and got["state"] == "down" and got["down_at"] is not None
    assert str(got["lease_until"].isoformat()) == downs[0][1]["lease_until"]
    listed = {n["node_id"]: n for n in a.nodes()}
    assert (listed["B"]["state"], listed["B"]["expired"]) == ("down", False)

    tick(a_rec)
    tick(a_rec)  # the rounds of 32 and 40 are over: both judged
    assert a_rec.rounds >= 2
    assert len(a_rec.of_type("node_down")) == 1, "a node is declared down once"

    tick(b_rec)  # B wakes up: its renewal finds it down
    assert b_rec.wait(lambda: bool(b_rec.lost))
    assert "declared down" in b_rec.lost[0] and not b.valid()
    assert b_rec.of_type("node_down") == []


def test_two_judges_declare_a_node_down_once_between_them(journal_db: str, leases: Leases) -> None:
    a, a_rec = leases.make(journal_db, "A")
    c, c_rec = leases.make(journal_db, "C")
    b, b_rec = leases.make(journal_db, "B")
    for lease, rec in ((a, a_rec), (c, c_rec), (b, b_rec)):
        leases.start(lease, rec)
    expire(journal_db, "B")
    for _ in range(3):
        tick(a_rec)
        tick(c_rec)
    a_rec.clock.advance(STEP)  # both judge in the same moment, as far as the test can make them
    c_rec.clock.advance(STEP)
    assert a_rec.wait(lambda: a_rec.rounds >= 1) and c_rec.wait(lambda: c_rec.rounds >= 1)
    downs = a_rec.of_type("node_down") + c_rec.of_type("node_down")
    assert [node for node, _ in downs] == ["B"]
    assert downs[0][1]["declared_by"] in ("A", "C")


def test_right_after_reconnecting_a_node_judges_no_one_until_it_has_renewed_for_a_lease(
    journal_db: str, leases: Leases
) -> None:
    a, a_rec = leases.make(journal_db, "A")
    leases.start(a, a_rec)
    sql(journal_db, "INSERT INTO nodes (node_id, run_id, host, pid, version, lease_until, state) "
                    "VALUES ('B', 'run-B', 'elsewhere', 1, 'test', now() + interval '1 hour', 'up')")
    for _ in range(4):  # 8 .. 32: fresh since its join at 0, A judges (nobody has expired yet)
        tick(a_rec)
    tick(a_rec, hold=True)  # 40, held before its UPDATE: every earlier round is over
    judged = a_rec.rounds
    assert judged >= 1
    terminated = sql(journal_db, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND application_name = 'mistersmith-lease'")
    assert terminated == [(True,)]
    expire(journal_db, "B")
    a_rec.release()
    assert a_rec.wait(lambda: a_rec.failures == 1), "the renewal of 40 failed: A's renewals broke off"

    for _ in range(3):  # 48 (reconnected), 56, 64
        renewed = a.renewals
        tick(a_rec)
        # Each renewal lands before the clock moves on: a jump while one is in flight would be a
        # renewal that took 8 s, and the watch thread would rightly fence the node. A renewal tells
        # no recorder, so the barrier is the next round (one heartbeat on), which the lease thread
        # begins only once this one has ended.
        tick(a_rec, CONFIG.heartbeat_s)
        assert a.renewals > renewed
    tick(a_rec, hold=True)  # 72, held: the rounds up to 64 are over, 16 s after the reconnection
    assert a.valid() and a_rec.lost == []
    assert a_rec.of_type("node_down") == [] and a_rec.rounds == judged, "no judging within a lease of the break"
    got = row(journal_db, "B")
    assert got is not None and got["state"] == "up"
    a_rec.release()

    tick(a_rec)  # 80: 32 s of renewals since the reconnection at 48
    assert a_rec.wait(lambda: a_rec.rounds > judged)
    assert [(node, data["declared_by"]) for node, data in a_rec.of_type("node_down")] == [("B", "A")]
    got = row(journal_db, "B")
    assert got is not None and got["state"] == "down"


def test_a_node_never_declares_itself_down(journal_db: str, leases: Leases) -> None:
    a, a_rec = leases.make(journal_db, "A")
    leases.start(a, a_rec)
    expire(journal_db, "A")  # its own row, expired by the database's clock: renewal puts it right
    for _ in range(4):
        tick(a_rec)
    assert a_rec.wait(lambda: a_rec.rounds >= 1)
    assert a_rec.of_type("node_down") == [] and a_rec.lost == []
    got = row(journal_db, "A")
    assert got is not None and (got["state"], got["live"]) == ("up", True)


# -- leaving ---------------------------------------------------------------------------------------


def test_stop_with_leave_marks_the_row_down_and_without_it_the_lease_just_runs_out(
    journal_db: str, leases: Leases
) -> None:
    a, a_rec = leases.make(journal_db, "A")
    b, b_rec = leases.make(journal_db, "B")
    leases.start(a, a_rec)
    leases.start(b, b_rec)
    a.stop(leave=True)
    b.stop()
    gone = row(journal_db, "A")
    assert gone is not None
    assert (gone["state"], gone["run_id"], gone["live"]) == ("down", a.run_id, False)
    assert gone["down_at"] is not None
    kept = row(journal_db, "B")
    assert kept is not None and (kept["state"], kept["live"]) == ("up", True)
    assert a_rec.lost == [] and b_rec.lost == [], "leaving is not losing"


def test_leaving_marks_only_this_run_down(journal_db: str, leases: Leases) -> None:
    old, old_rec = leases.make(journal_db, "A")
    new, new_rec = leases.make(journal_db, "A")
    leases.start(old, old_rec)
    leases.start(new, new_rec)
    old.stop(leave=True)
    got = row(journal_db, "A")
    assert got is not None and (got["state"], got["run_id"]) == ("up", new.run_id)


def test_lease_config_is_checked() -> None:
    with pytest.raises(ValueError, match=r"heartbeat_s \(5.0\) < lease_s - margin_s \(5.0 - 1.0\)"):
        LeaseConfig(lease_s=5.0, heartbeat_s=5.0, margin_s=1.0)
    with pytest.raises(ValueError):
        LeaseConfig(lease_s=5.0, heartbeat_s=1.0, margin_s=0.0)
    with pytest.raises(ValueError):
        LeaseConfig(lease_s=5.0, heartbeat_s=1.0, margin_s=4.5)
