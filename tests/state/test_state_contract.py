"""The ``StateStore`` contract: every store (memory, SQLite, PostgreSQL) passes these same cases.

Then a property test runs random sequences of activate/commit/record/forget
against a small model, and the SQLite store's own cases show two stores on one
file (and a second process) fencing each other.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistersmith.errors import FencedError, StateUnavailableError
from mistersmith.state import Activation, MemoryStateStore, SqliteStateStore, StateStore, encode_state

JOIN_S = 30.0


def _make(kind: str, directory: Path) -> StateStore:
    if kind == "memory":
        return MemoryStateStore()
    assert kind == "sqlite", kind
    return SqliteStateStore(directory / "state.db")


@pytest.fixture(scope="session", params=["memory", "sqlite", "pg"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store; for ``pg`` the PostgreSQL server starts here, before the tests' thread-leak check."""
    if request.param == "pg":
        # Skips only while the class is unwritten: once mistersmith.journal exports it, the pg cases run.
        if getattr(importlib.import_module("mistersmith.journal"), "PgStateStore", None) is None:
            pytest.skip("mistersmith.journal.PgStateStore does not exist yet (being written in "
                        "mistersmith/journal/states.py); the pg contract runs once it is exported")
        request.getfixturevalue("journal_template")
    return str(request.param)


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if store_kind == "pg":
        from mistersmith.journal import PgStateStore  # type: ignore[attr-defined,unused-ignore]

        made: StateStore = PgStateStore(request.getfixturevalue("journal_db"))
    else:
        made = _make(store_kind, tmp_path)
    try:
        yield made
    finally:
        made.close()


def _state(value: dict[str, Any]) -> bytes:
    return encode_state("a", value)


def _resumed(got: Activation) -> tuple[int, int, Any, dict[str, Any]]:
    """An activation with its JSON decoded (``test_bytes_come_back_as_committed`` checks the bytes)."""
    return (got.epoch, got.version, None if got.state is None else orjson.loads(got.state),
            {key: orjson.loads(outcome) for key, outcome in got.effects.items()})


def _kept(store: StateStore, agent_id: str) -> list[tuple[int, int, dict[str, Any]]]:
    return [(v.version, v.epoch, v.state) for v in store.versions(agent_id)]


# -- the contract ----------------------------------------------------------------


def test_the_first_activation_starts_from_nothing(store: StateStore) -> None:
    assert isinstance(store, StateStore)
    first = store.activate("a", "n1")
    assert _resumed(first) == (1, 0, None, {})
    assert store.read("a") is None
    assert store.versions("a") == []


def test_an_activation_resumes_from_the_last_commit(store: StateStore) -> None:
    first = store.activate("a", "n1")
    store.commit("a", first.epoch, 1, _state({"n": 1}), node_id="n1")
    store.commit("a", first.epoch, 2, _state({"n": 2}), node_id="n1")
    second = store.activate("a", "n2")
    assert _resumed(second) == (2, 2, {"n": 2}, {})


def test_versions_grow_and_keep_holds_the_newest(store: StateStore) -> None:
    epoch = store.activate("a", "n1").epoch
    for version in range(1, 6):
        store.commit("a", epoch, version, _state({"n": version}), node_id="n1", keep=3)
    assert [v.version for v in store.versions("a")] == [3, 4, 5]
    newest = store.read("a")
    assert newest is not None and (newest.version, newest.state) == (5, {"n": 5})
    four = store.read("a", 4)
    assert four is not None
    assert (four.agent_id, four.version, four.epoch, four.state, four.node_id) == ("a", 4, epoch, {"n": 4}, "n1")
    assert four.bytes == len(_state({"n": 4}))
    assert four.committed_at.tzinfo is not None
    assert four.to_dict()["committed_at"] == four.committed_at.isoformat()
    assert store.read("a", 1) is None  # pruned
    assert store.read("nobody") is None
    store.commit("a", epoch, 6, _state({"n": 6}), node_id="n1")  # keep=1 (the default)
    assert _kept(store, "a") == [(6, epoch, {"n": 6})]


def test_writes_with_an_old_epoch_are_fenced_and_change_nothing(store: StateStore) -> None:
    old = store.activate("a", "n1").epoch
    store.commit("a", old, 1, _state({"n": 1}), node_id="n1", keep=5)
    store.record_effect("a", old, "k", b'{"value":1}')
    new = store.activate("a", "n2").epoch
    assert new == old + 1
    with pytest.raises(FencedError) as fenced:
        store.commit("a", old, 2, _state({"n": 2}), node_id="n1", keep=5)
    assert (fenced.value.agent_id, fenced.value.epoch) == ("a", old)
    with pytest.raises(FencedError):
        store.record_effect("a", old, "k2", b'{"value":2}')
    with pytest.raises(FencedError):
        store.record_effect("a", old, "k", b'{"value":"overwritten"}')
    with pytest.raises(FencedError):
        store.forget_effect("a", old, "k")
    with pytest.raises(FencedError):
        store.commit("never-activated", 1, 1, _state({}), node_id="n1")
    assert _kept(store, "a") == [(1, old, {"n": 1})]
    assert store.versions("never-activated") == []
    after = store.activate("a", "n3")
    assert _resumed(after)[1:] == (1, {"n": 1}, {"k": {"value": 1}})
    with pytest.raises(FencedError):  # the one that fenced is fenced in turn
        store.commit("a", new, 2, _state({"n": 2}), node_id="n2")


def test_reset_commits_an_empty_state_as_the_next_version(store: StateStore) -> None:
    epoch = store.activate("a", "n1").epoch
    store.commit("a", epoch, 3, _state({"n": 3}), node_id="n1")
    fresh = store.activate("a", "n2", reset=True)
    assert (fresh.epoch, fresh.version, fresh.state) == (2, 4, b"{}")  # the port's exact bytes
    latest = store.read("a")
    assert latest is not None and (latest.version, latest.epoch, latest.state) == (4, 2, {})
    again = store.activate("a", "n2")
    assert (again.version, again.state) == (4, b"{}")


def test_reset_with_nothing_committed_stays_at_version_zero(store: StateStore) -> None:
    store.activate("a", "n1")
    fresh = store.activate("a", "n1", reset=True)
    assert (fresh.epoch, fresh.version, fresh.state) == (2, 0, None)
    assert store.versions("a") == []


def test_recorded_effects_come_back_and_forgotten_ones_do_not(store: StateStore) -> None:
    epoch = store.activate("a", "n1").epoch
    store.record_effect("a", epoch, "charge", b'{"value":{"id":7}}')
    store.record_effect("a", epoch, "mail", b'{"error":{"type":"Boom","message":"no"}}')
    back = store.activate("a", "n1")
    assert _resumed(back)[3] == {"charge": {"value": {"id": 7}}, "mail": {"error": {"type": "Boom", "message": "no"}}}
    store.forget_effect("a", back.epoch, "mail")
    store.forget_effect("a", back.epoch, "never-recorded")
    assert _resumed(store.activate("a", "n1"))[3] == {"charge": {"value": {"id": 7}}}


def test_effect_retention_forgets_older_records_on_activation(store: StateStore) -> None:
    epoch = store.activate("a", "n1").epoch
    store.record_effect("a", epoch, "old", b'{"value":1}')
    recorded = time.time()
    while time.time() <= recorded:  # a clock tick, not a wait for another thread
        pass
    kept = store.activate("a", "n1", effect_retention_s=3600.0)
    assert _resumed(kept)[3] == {"old": {"value": 1}}
    dropped = store.activate("a", "n1", effect_retention_s=0.0)
    assert dict(dropped.effects) == {}
    assert dict(store.activate("a", "n1").effects) == {}


def test_agents_are_independent(store: StateStore) -> None:
    a = store.activate("a", "n1").epoch
    b = store.activate("b", "n1").epoch
    store.activate("a", "n2")  # fences a's first epoch only
    store.commit("b", b, 1, _state({"who": "b"}), node_id="n1")
    store.record_effect("b", b, "k", b'{"value":"b"}')
    with pytest.raises(FencedError):
        store.commit("a", a, 1, _state({"who": "a"}), node_id="n1")
    a2 = store.activate("a", "n2")
    assert _resumed(a2) == (3, 0, None, {})
    store.commit("a", a2.epoch, 1, _state({"who": "a"}), node_id="n2")
    assert [(v.agent_id, v.version, v.state) for v in store.versions()] == [
        ("a", 1, {"who": "a"}), ("b", 1, {"who": "b"})]
    b2 = store.activate("b", "n1")
    assert _resumed(b2) == (2, 1, {"who": "b"}, {"k": {"value": "b"}})


def test_twenty_threads_commit_to_twenty_agents_at_once(store: StateStore) -> None:
    agents = [f"agent-{i}" for i in range(20)]
    start = threading.Barrier(len(agents))
    errors: list[BaseException] = []

    def run(agent_id: str) -> None:
        try:
            start.wait(timeout=JOIN_S)
            epoch = store.activate(agent_id, "n1").epoch
            for version in (1, 2, 3):
                store.commit(agent_id, epoch, version, _state({"agent": agent_id, "v": version}), node_id="n1",
                             keep=2, timeout_s=JOIN_S)
            store.record_effect(agent_id, epoch, "k", b'{"value":true}', timeout_s=JOIN_S)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(agent_id,), name=f"test-commit-{agent_id}") for agent_id in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_S)
    assert not [t.name for t in threads if t.is_alive()]
    assert errors == []
    for agent_id in agents:
        assert [(v.version, v.state["v"]) for v in store.versions(agent_id)] == [(2, 2), (3, 3)]
        back = store.activate(agent_id, "n1")
        assert _resumed(back) == (2, 3, {"agent": agent_id, "v": 3}, {"k": {"value": True}})


def test_state_and_outcomes_come_back_as_the_same_json(store: StateStore) -> None:
    """The port: the same JSON value comes back (jsonb re-formats the bytes: spaces, key order)."""
    state = _state({"zebra": [1, 2.5, "\u00e9"], "a": {"yy": None, "x": True}})
    outcome = b'{"value":{"long_key":1,"k":[]}}'
    epoch = store.activate("a", "n1").epoch
    store.commit("a", epoch, 1, state, node_id="n1")
    store.record_effect("a", epoch, "k", outcome)
    back = store.activate("a", "n1")
    assert back.state is not None and orjson.loads(back.state) == orjson.loads(state)
    assert {k: orjson.loads(v) for k, v in back.effects.items()} == {"k": orjson.loads(outcome)}
    latest = store.read("a")
    assert latest is not None and latest.bytes == len(state)


def test_a_closed_store_refuses_every_write(store: StateStore) -> None:
    epoch = store.activate("a", "n1").epoch
    store.close()
    store.close()  # idempotent
    with pytest.raises(StateUnavailableError):
        store.activate("a", "n1")
    with pytest.raises(StateUnavailableError) as closed:
        store.commit("a", epoch, 1, _state({}), node_id="n1")
    assert closed.value.agent_id == "a" and not closed.value.outcome_unknown
    with pytest.raises(StateUnavailableError):
        store.record_effect("a", epoch, "k", b'{"value":1}')
    with pytest.raises(StateUnavailableError):
        store.forget_effect("a", epoch, "k")


def test_a_closed_store_refuses_reads(store: StateStore) -> None:
    store.close()
    with pytest.raises(StateUnavailableError):
        store.read("a")
    with pytest.raises(StateUnavailableError):
        store.versions()


# -- random sequences against a model -----------------------------------------------


@dataclass
class _Model:
    epoch: int = 0
    version: int = 0
    kept: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    effects: dict[str, bytes] = field(default_factory=dict)


_AGENTS = st.sampled_from(["a", "b"])
_KEYS = st.sampled_from(["k1", "k2"])
_OPS = st.one_of(
    st.tuples(st.just("activate"), _AGENTS, st.booleans()),
    st.tuples(st.just("commit"), _AGENTS, st.booleans(), st.integers(1, 3)),
    st.tuples(st.just("record"), _AGENTS, st.booleans(), _KEYS, st.integers(0, 9)),
    st.tuples(st.just("forget"), _AGENTS, st.booleans(), _KEYS),
)


def _step(store: StateStore, models: dict[str, _Model], op: tuple[Any, ...]) -> None:
    kind, agent_id = op[0], op[1]
    model = models[agent_id]
    if kind == "activate":
        got = store.activate(agent_id, "n1", reset=op[2])
        model.epoch += 1
        if op[2] and model.version:
            model.version += 1
            model.kept = [(model.version, model.epoch, {})]
        expected_state = encode_state(agent_id, model.kept[-1][2]) if model.kept else None
        assert (got.epoch, got.version, got.state, dict(got.effects)) == (
            model.epoch, model.version, expected_state, model.effects)
        return
    stale = op[2]
    epoch = model.epoch - 1 if stale else model.epoch
    fenced = stale or model.epoch == 0
    try:
        if kind == "commit":
            value = {"v": model.version + 1, "epoch": epoch}
            store.commit(agent_id, epoch, model.version + 1, encode_state(agent_id, value), node_id="n1", keep=op[3])
            if not fenced:
                model.version += 1
                model.kept = (model.kept + [(model.version, epoch, value)])[-op[3]:]
        elif kind == "record":
            outcome = b'{"value":%d}' % op[4]
            store.record_effect(agent_id, epoch, op[3], outcome)
            if not fenced:
                model.effects[op[3]] = outcome
        else:
            store.forget_effect(agent_id, epoch, op[3])
            if not fenced:
                model.effects.pop(op[3], None)
    except FencedError:
        assert fenced, f"{op} was fenced at epoch {epoch} (the owner's is {model.epoch})"
    else:
        assert not fenced, f"{op} at epoch {epoch} was not fenced (the owner's is {model.epoch})"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(max_examples=50)
@given(ops=st.lists(_OPS, max_size=12))
def test_random_sequences_match_the_model(kind: str, ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="ms-state-") as directory:
        store = _make(kind, Path(directory))
        try:
            models = {"a": _Model(), "b": _Model()}
            for op in ops:
                _step(store, models, op)
                for agent_id, model in models.items():
                    assert _kept(store, agent_id) == model.kept
        finally:
            store.close()


# -- SQLite: one file, several stores and processes -----------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "private" / "state.db"


@pytest.fixture
def open_sqlite(db_path: Path) -> Iterator[Callable[..., SqliteStateStore]]:
    made: list[SqliteStateStore] = []

    def factory(**options: Any) -> SqliteStateStore:
        made.append(SqliteStateStore(db_path, **options))
        return made[-1]

    try:
        yield factory
    finally:
        for opened in made:
            opened.close()


def test_sqlite_two_stores_on_one_file_fence_each_other(open_sqlite: Callable[..., SqliteStateStore]) -> None:
    one, two = open_sqlite(), open_sqlite()
    first = one.activate("a", "n1")
    one.commit("a", first.epoch, 1, _state({"by": "one"}), node_id="n1")
    taken = two.activate("a", "n2")
    assert (taken.epoch, taken.version, taken.state) == (2, 1, _state({"by": "one"}))
    with pytest.raises(FencedError):
        one.commit("a", first.epoch, 2, _state({"by": "one"}), node_id="n1")
    with pytest.raises(FencedError):
        one.record_effect("a", first.epoch, "k", b'{"value":1}')
    two.commit("a", taken.epoch, 2, _state({"by": "two"}), node_id="n2")
    latest = one.read("a")
    assert latest is not None and (latest.version, latest.epoch, latest.node_id) == (2, 2, "n2")


def test_sqlite_a_second_process_fences_the_first(db_path: Path, open_sqlite: Callable[..., SqliteStateStore]) -> None:
    mine = open_sqlite()
    first = mine.activate("a", "n1")
    mine.commit("a", first.epoch, 1, _state({"by": "parent"}), node_id="n1")
    child = (
        "import sys\n"
        "from mistersmith.state import SqliteStateStore\n"
        "store = SqliteStateStore(sys.argv[1])\n"
        "got = store.activate('a', 'n2')\n"
        "store.commit('a', got.epoch, got.version + 1, b'{\"by\":\"child\"}', node_id='n2')\n"
        "store.close()\n"
        "print(got.epoch, got.version, got.state.decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(db_path)], capture_output=True, text=True,
                          timeout=JOIN_S, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", '{"by":"parent"}']
    with pytest.raises(FencedError):
        mine.commit("a", first.epoch, 2, _state({"by": "parent"}), node_id="n1")
    latest = mine.read("a")
    assert latest is not None and (latest.version, latest.epoch, latest.state) == (2, 2, {"by": "child"})


def test_sqlite_state_survives_reopening(open_sqlite: Callable[..., SqliteStateStore]) -> None:
    before = open_sqlite()
    epoch = before.activate("a", "n1").epoch
    before.commit("a", epoch, 1, _state({"n": 1}), node_id="n1")
    before.record_effect("a", epoch, "k", b'{"value":1}')
    before.close()
    after = open_sqlite().activate("a", "n1")
    assert (after.epoch, after.version, after.state, dict(after.effects)) == (
        2, 1, _state({"n": 1}), {"k": b'{"value":1}'})


def test_sqlite_a_locked_database_is_unavailable_and_nothing_is_written(
    db_path: Path, open_sqlite: Callable[..., SqliteStateStore]
) -> None:
    store = open_sqlite(timeout_s=0.05)
    epoch = store.activate("a", "n1").epoch
    other = sqlite3.connect(db_path, isolation_level=None)  # another process's writer, as SQLite sees it
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StateUnavailableError) as locked:
            store.commit("a", epoch, 1, _state({"n": 1}), node_id="n1", timeout_s=0.05)
        assert "locked" in locked.value.detail and not locked.value.outcome_unknown
        with pytest.raises(StateUnavailableError):
            store.activate("a", "n1")
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert store.versions("a") == []
    back = store.activate("a", "n1")
    assert (back.epoch, back.version) == (2, 0)  # the refused activation took no epoch


def test_sqlite_files_are_private_and_in_wal_mode(db_path: Path, open_sqlite: Callable[..., SqliteStateStore]) -> None:
    store = open_sqlite()
    epoch = store.activate("a", "n1").epoch
    store.commit("a", epoch, 1, _state({}), node_id="n1")
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    for name in (db_path.name, db_path.name + "-wal"):
        assert stat.S_IMODE(os.stat(db_path.with_name(name)).st_mode) == 0o600, name
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        raw.close()


def test_sqlite_refuses_a_file_with_a_newer_schema(db_path: Path) -> None:
    SqliteStateStore(db_path).close()
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA user_version = 99")
    finally:
        raw.close()
    with pytest.raises(StateUnavailableError, match="schema is version 99, newer"):
        SqliteStateStore(db_path)
