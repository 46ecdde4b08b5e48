"""``PgStateStore`` against a real PostgreSQL: round trips, fencing, group commit, outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest

from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.errors import FencedError, StateUnavailableError
from mistersmith.journal import PgStateStore
from mistersmith.journal.migrate import migrate
from mistersmith.journal.state_writer import COMMIT, EFFECT, Request, StateWriter
from mistersmith.state import StateStore

WAIT_S = 20.0
StoreFactory = Callable[..., PgStateStore]


@pytest.fixture
def make_store() -> Iterator[StoreFactory]:
    made: list[PgStateStore] = []

    def factory(conninfo: str, **options: Any) -> PgStateStore:
        options.setdefault("connect_timeout_s", 2.0)
        made.append(PgStateStore(conninfo, **options))
        return made[-1]

    try:
        yield factory
    finally:
        for store in made:
            store.close()


@pytest.fixture
def store(journal_db: str, make_store: StoreFactory) -> PgStateStore:
    return make_store(journal_db)


def state(**values: Any) -> bytes:
    return orjson.dumps(values)


def rows(conninfo: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query, params).fetchall()


class Run:
    """Runs ``fn`` in a thread; ``result()`` joins it and returns or raises what it did."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # handed to result()
            self.error = exc
        finally:
            self.done.set()

    def result(self, timeout_s: float = WAIT_S) -> Any:
        assert self.done.wait(timeout_s), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.value


class OwnerLock:
    """Holds ``agent_owners`` row locks in an open transaction, so the writer's batch waits on them."""

    def __init__(self, conninfo: str, *agent_ids: str) -> None:
        self.writer_pid = 0
        self.conn = psycopg.connect(conninfo)
        self.conn.execute("SELECT 1 FROM agent_owners WHERE agent_id = ANY(%s) FOR UPDATE", (list(agent_ids),))

    def writer_waits(self) -> bool:
        """The writer's statement is blocked on our locks (PostgreSQL has no event for that: a bounded poll)."""
        deadline = time.monotonic() + WAIT_S
        with psycopg.connect(self.conn.info.dsn, autocommit=True) as probe:
            while time.monotonic() < deadline:
                found = probe.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'mistersmith-state-writer'"
                    " AND %s = ANY(pg_blocking_pids(pid))", (self.conn.info.backend_pid,)
                ).fetchone()
                if found:
                    self.writer_pid = int(found[0])
                    return True
                probe.execute("SELECT pg_sleep(0.01)")  # the server paces the poll
        return False

    def kill_writer(self) -> None:
        """End the writer's connection while its batch waits (its outcome is then unknown to it)."""
        self.conn.execute("SELECT pg_terminate_backend(%s, %s)", (self.writer_pid, int(WAIT_S * 1000)))

    def release(self, commit: bool = False) -> None:
        (self.conn.commit if commit else self.conn.rollback)()
        self.conn.close()


# -- round trips ---------------------------------------------------------------------------------


def test_activate_commit_read_round_trip(store: PgStateStore) -> None:
    assert isinstance(store, StateStore)
    first = store.activate("a1", "n1")
    assert (first.epoch, first.version, first.state, dict(first.effects)) == (1, 0, None, {})
    assert store.read("a1") is None
    store.commit("a1", first.epoch, 1, state(count=1, name="é中\"\\"), node_id="n1")
    got = store.read("a1")
    assert got is not None
    assert (got.agent_id, got.version, got.epoch, got.state, got.node_id) == ("a1", 1, 1, {"count": 1, "name": "é中\"\\"}, "n1")
    assert got.bytes == len(state(count=1, name="é中\"\\"))
    assert got.committed_at.tzinfo is not None
    again = store.activate("a1", "n2")
    assert (again.epoch, again.version) == (2, 1)
    assert again.state is not None and orjson.loads(again.state) == {"count": 1, "name": "é中\"\\"}


def test_versions_grow_and_keep_prunes(store: PgStateStore, journal_db: str) -> None:
    epoch = store.activate("a1", "n1").epoch
    for version in range(1, 6):
        store.commit("a1", epoch, version, state(v=version), node_id="n1", keep=3)
    assert [v.version for v in store.versions("a1")] == [3, 4, 5]
    assert store.read("a1", 2) is None
    assert store.read("a1", 4) is not None and store.read("a1", 4).state == {"v": 4}  # type: ignore[union-attr]
    store.commit("a1", epoch, 6, state(v=6), node_id="n1")  # keep=1
    assert [v.version for v in store.versions("a1")] == [6]
    assert rows(journal_db, "SELECT version FROM agent_owners WHERE agent_id = 'a1'") == [(6,)]
    assert store.activate("a1", "n1").version == 6
    store.commit("b1", store.activate("b1", "n1").epoch, 1, state(), node_id="n1")
    assert [(v.agent_id, v.version) for v in store.versions()] == [("a1", 6), ("b1", 1)]


def test_reset_commits_an_empty_state_as_the_next_version(store: PgStateStore) -> None:
    assert store.activate("fresh", "n1", reset=True).state is None  # nothing committed: nothing to reset
    epoch = store.activate("a1", "n1").epoch
    store.commit("a1", epoch, 1, state(x=1), node_id="n1", keep=5)
    store.commit("a1", epoch, 2, state(x=2), node_id="n1", keep=5)
    reset = store.activate("a1", "n2", reset=True)
    assert (reset.epoch, reset.version, reset.state) == (epoch + 1, 3, b"{}")
    assert [(v.version, v.state, v.epoch, v.node_id) for v in store.versions("a1")] == [(3, {}, epoch + 1, "n2")]
    assert store.activate("a1", "n2").version == 3


# -- fencing -----------------------------------------------------------------------------------------


def test_an_older_epoch_is_fenced_and_writes_nothing(store: PgStateStore, journal_db: str) -> None:
    old = store.activate("a1", "n1")
    store.commit("a1", old.epoch, 1, state(by="old"), node_id="n1")
    new = store.activate("a1", "n2")
    assert new.epoch == old.epoch + 1
    with pytest.raises(FencedError) as caught:
        store.commit("a1", old.epoch, 2, state(by="old"), node_id="n1")
    assert (caught.value.agent_id, caught.value.epoch) == ("a1", old.epoch)
    with pytest.raises(FencedError):
        store.record_effect("a1", old.epoch, "k", b'{"value":1}')
    with pytest.raises(FencedError):
        store.forget_effect("a1", old.epoch, "k")
    with pytest.raises(FencedError):
        store.commit("never-activated", 1, 1, state(), node_id="n1")
    assert [(v.version, v.epoch) for v in store.versions("a1")] == [(1, old.epoch)]
    assert rows(journal_db, "SELECT epoch, version, node_id FROM agent_owners WHERE agent_id = 'a1'") == [
        (new.epoch, 1, "n2")]
    assert rows(journal_db, "SELECT count(*) FROM agent_effects") == [(0,)]
    assert store.stats()["fenced"] == 3


def test_commit_and_activate_race_never_loses_an_acknowledged_commit(store: PgStateStore) -> None:
    """Jepsen-style: record every reply, then check the whole history of each round.

    A committer commits versions 1, 2, ... under its epoch, as fast as it can,
    until it is refused; once it has ``head_start`` acknowledged commits, another
    thread activates the agent, racing the committer's next commit.
    """
    for round_ in range(40):
        agent, head_start = f"race{round_}", round_ % 5
        epoch = store.activate(agent, "n1").epoch
        acked: list[tuple[int, float, float]] = []  # version, when its commit was called, when it returned
        refused: list[float] = []  # when a refused commit was called
        ready = threading.Event()

        def committer(agent: str = agent, epoch: int = epoch, acked: list[tuple[int, float, float]] = acked,
                      refused: list[float] = refused, ready: threading.Event = ready, head_start: int = head_start,
                      ) -> None:
            for version in range(1, 10_000):
                if version > head_start:
                    ready.set()
                called = time.monotonic()
                try:
                    store.commit(agent, epoch, version, state(v=version), node_id="n1")
                except FencedError:
                    refused.append(called)
                    return
                acked.append((version, called, time.monotonic()))

        run = Run(committer)
        assert ready.wait(WAIT_S)
        activate_called = time.monotonic()
        took = store.activate(agent, "n2")
        activate_returned = time.monotonic()
        run.result()
        assert took.epoch == epoch + 1
        newest = max((v for v, _, _ in acked), default=0)
        assert newest >= head_start
        assert took.version == newest, "the activation resumes from the last acknowledged commit, no later one"
        assert all(v <= took.version for v, _, at in acked if at < activate_called), "an acknowledged commit was lost"
        assert not any(called > activate_returned for _, called, _ in acked), "an old epoch wrote after the takeover"
        assert len(refused) == 1
        if newest:
            assert took.state is not None and orjson.loads(took.state) == {"v": newest}


def test_a_hundred_threads_commit_at_once_in_few_transactions(store: PgStateStore) -> None:
    epochs = {f"g{i}": store.activate(f"g{i}", "n1").epoch for i in range(100)}
    go = threading.Barrier(100, timeout=WAIT_S)

    def commits(agent: str) -> int:
        go.wait()
        for version in range(1, 4):
            store.commit(agent, epochs[agent], version, state(v=version), node_id="n1")
        return version

    runs = [Run(lambda agent=agent: commits(agent)) for agent in epochs]  # type: ignore[misc]
    assert [r.result() for r in runs] == [3] * 100
    stats = store.stats()
    assert stats["commits"] == 300 and stats["pending"] == 0
    assert stats["batches"] < 300 and stats["mean_batch_size"] > 1, stats
    assert {v.agent_id: v.version for v in store.versions()} == dict.fromkeys(epochs, 3)


# -- effects -------------------------------------------------------------------------------------------


def test_effects_are_returned_by_later_activations_and_can_be_forgotten(store: PgStateStore) -> None:
    epoch = store.activate("a1", "n1").epoch
    store.record_effect("a1", epoch, "charge", b'{"value":{"id":"ch_1"}}')
    store.record_effect("a1", epoch, "mail", b'{"error":{"type":"Boom"}}')
    effects = store.activate("a1", "n1").effects
    assert {k: orjson.loads(v) for k, v in effects.items()} == {
        "charge": {"value": {"id": "ch_1"}}, "mail": {"error": {"type": "Boom"}}}
    epoch = store.activate("a1", "n1").epoch
    store.record_effect("a1", epoch, "mail", b'{"value":2}')  # a retried key: the new outcome wins
    store.forget_effect("a1", epoch, "charge")
    store.forget_effect("a1", epoch, "no-such-key")  # nothing to forget is fine
    effects = store.activate("a1", "n1").effects
    assert {k: orjson.loads(v) for k, v in effects.items()} == {"mail": {"value": 2}}
    assert store.stats()["effects"] == 3


def test_effect_retention_forgets_old_records_first(store: PgStateStore, journal_db: str) -> None:
    epoch = store.activate("a1", "n1").epoch
    store.record_effect("a1", epoch, "old", b'{"value":1}')
    store.record_effect("a1", epoch, "new", b'{"value":2}')
    with psycopg.connect(journal_db) as conn:
        conn.execute("UPDATE agent_effects SET recorded_at = now() - interval '1 hour' WHERE key = 'old'")
    assert set(store.activate("a1", "n1", effect_retention_s=60.0).effects) == {"new"}
    assert set(store.activate("a1", "n1").effects) == {"new"}
    assert dict(store.activate("a1", "n1", effect_retention_s=0.0).effects) == {}  # recorded in an earlier transaction


# -- failures in flight ----------------------------------------------------------------------------------


def test_a_batch_lost_with_its_connection_is_settled_by_looking_for_its_rows(
    store: PgStateStore, journal_db: str
) -> None:
    epoch = store.activate("a1", "n1").epoch
    lock = OwnerLock(journal_db, "a1")
    run = Run(lambda: store.commit("a1", epoch, 1, state(v=1), node_id="n1", timeout_s=WAIT_S))
    assert lock.writer_waits()
    lock.kill_writer()  # the batch's outcome is unknown; its row is absent, so it is sent again
    assert lock.writer_waits(), "the retried batch waits on the lock again"
    lock.release()
    run.result()
    assert [(v.version, v.state) for v in store.versions("a1")] == [(1, {"v": 1})]
    assert store.stats()["lost_batches"] == 1


def test_a_lost_batch_retried_after_a_takeover_is_fenced(store: PgStateStore, journal_db: str) -> None:
    epoch = store.activate("a1", "n1").epoch
    lock = OwnerLock(journal_db, "a1")
    run = Run(lambda: store.commit("a1", epoch, 1, state(v=1), node_id="n1", timeout_s=WAIT_S))
    assert lock.writer_waits()
    lock.kill_writer()
    assert lock.writer_waits()
    lock.conn.execute("UPDATE agent_owners SET epoch = epoch + 1 WHERE agent_id = 'a1'")  # another node took it
    lock.release(commit=True)
    with pytest.raises(FencedError):
        run.result()
    assert store.versions("a1") == []


def test_a_lost_batch_whose_rows_are_there_is_done_and_the_rest_is_sent_again(
    store: PgStateStore, journal_db: str
) -> None:
    """The writer's recovery step on its own: a batch that committed although its connection broke.

    (Losing exactly the reply to a COMMIT cannot be arranged from outside, so a
    second writer, idle, runs its recovery from this thread.)
    """
    epoch = store.activate("a1", "n1").epoch
    store.commit("a1", epoch, 1, state(v=1), node_id="n1", keep=5)  # as if the lost batch had committed
    store.record_effect("a1", epoch, "k", b'{"value":1}')
    sent = {"status": "sent", "timeout_s": WAIT_S, "deadline": time.monotonic() + WAIT_S}
    applied = Request(COMMIT, "a1", epoch, "state version 1", version=1, state='{"v":1}', bytes=7, keep=5,
                      node_id="n1", **sent)  # type: ignore[arg-type]
    effect = Request(EFFECT, "a1", epoch, "effect 'k'", key="k", outcome='{"value":1}', **sent)  # type: ignore[arg-type]
    missing = Request(COMMIT, "a1", epoch, "state version 2", version=2, state='{"v":2}', bytes=7, keep=5,
                      node_id="n1", **sent)  # type: ignore[arg-type]
    writer = StateWriter(journal_db, max_batch=10, connect_timeout_s=2.0)
    try:
        writer._recover([applied, effect, missing], psycopg.OperationalError("the connection broke"))
        assert applied.done.is_set() and applied.error is None
        assert effect.done.is_set() and effect.error is None
        assert missing.done.wait(WAIT_S) and missing.error is None, "not found: sent again, fenced again"
    finally:
        writer.close(WAIT_S)
    assert [v.version for v in store.versions("a1")] == [1, 2]


def test_a_sent_write_past_its_timeout_says_its_outcome_is_unknown(store: PgStateStore, journal_db: str) -> None:
    epoch = store.activate("a1", "n1").epoch
    lock = OwnerLock(journal_db, "a1")
    started = time.monotonic()
    with pytest.raises(StateUnavailableError) as caught:
        store.commit("a1", epoch, 1, state(v=1), node_id="n1", timeout_s=0.3)
    assert caught.value.outcome_unknown and 0.55 < time.monotonic() - started < 5
    lock.release()
    assert store.wait_for(lambda s: s["in_flight"] == 0, WAIT_S)
    assert store.stats()["outcome_unknown"] == 1
    assert [v.version for v in store.versions("a1")] == [1], "it was applied after all: unknown meant unknown"


def test_a_request_postgresql_refuses_fails_alone(store: PgStateStore, journal_db: str) -> None:
    epochs = {a: store.activate(a, "n1").epoch for a in ("blocker", "a1", "a2", "bad")}
    lock = OwnerLock(journal_db, "blocker")
    blocker = Run(lambda: store.commit("blocker", epochs["blocker"], 1, state(), node_id="n1", timeout_s=WAIT_S))
    assert lock.writer_waits()
    runs = {a: Run(lambda a=a: store.commit(a, epochs[a], 1, b"{not json" if a == "bad" else state(a=a),  # type: ignore[misc]
                                            node_id="n1", timeout_s=WAIT_S)) for a in ("a1", "a2", "bad")}
    assert store.wait_for(lambda s: s["pending"] == 3, WAIT_S)  # the next batch holds all three
    lock.release()
    blocker.result()
    runs["a1"].result()
    runs["a2"].result()
    with pytest.raises(StateUnavailableError, match="PostgreSQL refused it") as caught:
        runs["bad"].result()
    assert not caught.value.outcome_unknown
    assert sorted(v.agent_id for v in store.versions()) == ["a1", "a2", "blocker"]


# -- outages -------------------------------------------------------------------------------------------------


def test_postgres_down_writes_time_out_and_are_never_applied_then_queued_ones_land(
    own_pg: EmbeddedPostgres, make_store: StoreFactory
) -> None:
    conninfo = own_pg.conninfo()
    migrate(conninfo)
    store = make_store(conninfo, connect_timeout_s=1.0)
    epoch = store.activate("a1", "n1").epoch
    store.commit("a1", epoch, 1, state(v="before"), node_id="n1")
    own_pg.stop()

    started = time.monotonic()
    with pytest.raises(StateUnavailableError) as caught:
        store.commit("a1", epoch, 2, state(v="timed out"), node_id="n1", timeout_s=0.5)
    assert not caught.value.outcome_unknown, "the writer saw the connection was gone before sending"
    assert 0.45 < time.monotonic() - started < 3
    assert "not written within 0.50 s" in str(caught.value)
    with pytest.raises(StateUnavailableError) as effect_caught:
        store.record_effect("a1", epoch, "k", b'{"value":"timed out"}', timeout_s=0.3)
    assert not effect_caught.value.outcome_unknown
    started = time.monotonic()
    with pytest.raises(StateUnavailableError):
        store.activate("a1", "n1")
    with pytest.raises(StateUnavailableError):
        store.read("a1")
    assert time.monotonic() - started < 6
    assert store.wait_for(lambda s: not s["connected"], WAIT_S)

    queued = Run(lambda: store.commit("a1", epoch, 2, state(v="queued"), node_id="n1", timeout_s=60))
    assert store.wait_for(lambda s: s["pending"] == 1, WAIT_S)
    own_pg.start()
    queued.result()
    assert store.wait_for(lambda s: s["connected"], WAIT_S)
    assert [(v.version, v.state) for v in store.versions("a1")] == [(2, {"v": "queued"})]
    assert rows(conninfo, "SELECT count(*) FROM agent_states WHERE state->>'v' = 'timed out'") == [(0,)]
    assert rows(conninfo, "SELECT count(*) FROM agent_effects") == [(0,)]
    took = store.activate("a1", "n1")
    assert (took.epoch, took.version, dict(took.effects)) == (epoch + 1, 2, {})
    assert store.stats()["timed_out"] == 2


# -- closing ---------------------------------------------------------------------------------------------------


def test_close_fails_pending_writes_ends_the_thread_and_is_idempotent(
    store: PgStateStore, journal_db: str
) -> None:
    epochs = {a: store.activate(a, "n1").epoch for a in ("blocker", "a1")}
    lock = OwnerLock(journal_db, "blocker")
    blocker = Run(lambda: store.commit("blocker", epochs["blocker"], 1, state(), node_id="n1", timeout_s=WAIT_S))
    assert lock.writer_waits()
    pending = Run(lambda: store.commit("a1", epochs["a1"], 1, state(), node_id="n1", timeout_s=WAIT_S))
    assert store.wait_for(lambda s: s["pending"] == 1, WAIT_S)
    closing = Run(store.close)
    with pytest.raises(StateUnavailableError, match="the state store is closed"):
        pending.result()
    lock.release()
    blocker.result()  # the batch in flight finishes
    closing.result()
    assert not store._writer._thread.is_alive()
    store.close()
    with pytest.raises(StateUnavailableError, match="closed"):
        store.commit("a1", epochs["a1"], 2, state(), node_id="n1")
    with pytest.raises(StateUnavailableError, match="closed"):
        store.activate("a1", "n1")
    with pytest.raises(StateUnavailableError, match="closed"):
        store.record_effect("a1", epochs["a1"], "k", b'{"value":1}')
    with pytest.raises(StateUnavailableError, match="closed"):
        store.forget_effect("a1", epochs["a1"], "k")
    with pytest.raises(StateUnavailableError, match="closed"):
        store.read("a1")
    with pytest.raises(StateUnavailableError, match="closed"):
        store.versions()
    assert rows(journal_db, "SELECT agent_id FROM agent_states") == [("blocker",)]
