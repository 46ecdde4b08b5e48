"""Durable agents end to end: commits, restores, effects and fencing through a Runtime.

Every test runs against each ``StateStore`` that needs no server (``store``):
the in-memory one and, when it can be imported, the SQLite one. Nothing sleeps:
a crash is followed by a wait for the ``restarted`` event, an incarnation that
must end is joined and its supervisor settled (``end_incarnation``). The root
has no backoff, so restarts are immediate.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from _helpers import WAIT_S, end_incarnation, settle
from mistersmith import (
    Agent,
    AgentFailedError,
    CommandError,
    MisterSmithError,
    Runtime,
    SpecError,
    SupervisorSpec,
    UnknownAgentError,
    command,
)
from mistersmith.state import MemoryStateStore, StateStore

try:
    from mistersmith.state import SqliteStateStore
except ImportError:  # being written; the in-memory store is tested meanwhile
    SqliteStateStore = None  # type: ignore[assignment,misc]


ROOT = SupervisorSpec("root", intensity=1000, backoff=None)


# -- kinds ---------------------------------------------------------------------------


def counter_kind(calls: list[Any], *, durable: bool = True) -> type[Agent]:
    """An agent whose commands change ``self.state`` in every way a test needs.

    ``calls`` (outside the agent, so it outlives incarnations) logs every run of
    an effect's ``fn``; ``starts`` the state each ``on_start`` saw.
    """
    starts: list[dict[str, Any]] = []

    class Counter(Agent):
        kind = "counter"

        def on_start(self) -> None:
            self.started_with = _copy(self.state)
            starts.append(self.started_with)

        @command("add")
        def add(self, k: int) -> int:
            self.state["n"] = self.state.get("n", 0) + k
            return int(self.state["n"])

        @command("get")
        def get(self) -> dict[str, Any]:
            return _copy(self.state)

        @command("started_with")
        def get_started_with(self) -> dict[str, Any]:
            return self.started_with

        @command("whoami")
        def whoami(self) -> dict[str, Any]:
            return {"id": id(self), "restart_count": self.context.restart_count}

        @command("crash_mid")
        def crash_mid(self, k: int) -> None:
            self.state["n"] = self.state.get("n", 0) + k
            raise RuntimeError("crashed half-way")

        @command("refuse")
        def refuse(self, k: int) -> None:
            self.state["n"] = self.state.get("n", 0) + k
            raise CommandError("refused on purpose", code="refused")

        @command("commit_then_crash")
        def commit_then_crash(self, k: int, j: int) -> None:
            self.state["n"] = self.state.get("n", 0) + k
            assert self.commit() is True
            self.state["n"] += j
            raise RuntimeError("crashed after a commit")

        @command("grow")
        def grow(self, size: int) -> None:
            self.state["blob"] = "x" * size

        @command("put_bad")
        def put_bad(self, what: str) -> None:
            self.state["x"] = _bad_value(what)

        @command("effect")
        def do_effect(self, key: str, mode: str = "ok") -> Any:
            def fn(tag: str) -> Any:
                calls.append((key, mode))
                if mode == "error":
                    raise CommandError(f"effect {tag} refused", code="effect_refused")
                if mode == "boom":
                    raise RuntimeError("effect blew up")
                return {"tag": tag, "run": len(calls)}

            try:
                return self.effect(key, fn, key)
            except RuntimeError:
                return {"raised": True}

        @command("effect_async")
        def do_effect_async(self, key: str) -> Any:
            async def fn(tag: str) -> Any:
                await asyncio.sleep(0)  # a real await inside the coroutine, not a synchronisation
                calls.append((key, "async"))
                return {"tag": tag, "run": len(calls)}

            return self.effect(key, fn, key)

        @command("forget")
        def do_forget(self, key: str) -> None:
            self.forget(key)

    Counter.durable = durable
    Counter.starts = starts
    return Counter


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return dict(orjson.loads(orjson.dumps(state)))


def _bad_value(what: str) -> Any:
    return {
        "set": {1, 2},
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "bytes": b"raw",
        "int_key": {1: "one"},
    }[what]


# -- stores --------------------------------------------------------------------------


class Backend:
    """Opens stores of one kind; ``open`` again gives the same data (a fresh object for SQLite)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._memory = MemoryStateStore() if name == "memory" else None
        self.opened: list[StateStore] = []

    def open(self) -> StateStore:
        store: StateStore = self._memory if self._memory is not None else SqliteStateStore(self.path)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite" and SqliteStateStore is None:
        pytest.skip("mistersmith.state.SqliteStateStore does not import yet")
    b = Backend(request.param, tmp_path / "state" / "agents.db")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def store(backend: Backend) -> StateStore:
    return backend.open()


def open_runtime(store: StateStore, kind: type[Agent], **kwargs: Any) -> Runtime:
    return Runtime(root=ROOT, state_store=store, kinds={"counter": kind}, **kwargs)


def ask(rt: Runtime, agent_id: str, cmd: str, **payload: Any) -> Any:
    return rt.ask(agent_id, cmd, payload, timeout=WAIT_S)


def crash(rt: Runtime, agent_id: str, cmd: str = "crash_mid", **payload: Any) -> None:
    """Send a command that crashes the agent; return once its next incarnation has started."""
    payload = payload or ({"k": 1000} if cmd == "crash_mid" else {})
    with rt.subscribe(agent_id=agent_id, event_types=["restarted"]) as sub:
        with pytest.raises(AgentFailedError):
            ask(rt, agent_id, cmd, **payload)
        sub.get(WAIT_S)


def events(rt: Runtime, agent_id: str, event_type: str) -> list[Any]:
    return rt.history(agent_id=agent_id, event_types=[event_type])


# -- commit and restore ----------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4])
def test_a_restarted_agent_sees_exactly_the_state_after_n_commands(store: StateStore, n: int) -> None:
    kind = counter_kind([])
    with open_runtime(store, kind) as rt:
        rt.spawn("counter", "a")
        assert ask(rt, "a", "started_with") == {}
        for i in range(1, n + 1):
            ask(rt, "a", "add", k=i)
        expected = {"n": n * (n + 1) // 2}
        assert rt.get_state("a")["version"] == n

        crash(rt, "a")  # adds 1000, then raises: nothing of it is committed

        assert ask(rt, "a", "get") == expected
        assert ask(rt, "a", "started_with") == expected
        assert ask(rt, "a", "whoami")["restart_count"] == 1
        got = rt.get_state("a")
        assert got["state"] == expected
        assert got["version"] == n  # the crash committed nothing
        assert kind.starts == [{}, expected]


def test_a_crash_before_any_commit_restarts_from_nothing(store: StateStore) -> None:
    kind = counter_kind([])
    with open_runtime(store, kind) as rt:
        rt.spawn("counter", "a")
        crash(rt, "a")
        assert ask(rt, "a", "get") == {}
        assert ask(rt, "a", "started_with") == {}
        assert rt.get_state("a")["version"] == 0
        assert events(rt, "a", "state_restored") == []  # nothing was committed to restore


def test_a_command_error_commits_nothing_and_the_same_incarnation_goes_on(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
        me = ask(rt, "a", "whoami")
        with pytest.raises(CommandError) as info:
            ask(rt, "a", "refuse", k=50)
        assert info.value.code == "refused"
        assert ask(rt, "a", "get") == {"n": 1}  # its change was rolled back in memory too
        assert ask(rt, "a", "whoami") == me  # same incarnation, no restart
        assert ask(rt, "a", "add", k=2) == 3
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (2, {"n": 3})
        assert events(rt, "a", "restarted") == []


def test_commit_mid_handler_survives_a_crash_after_it(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
        crash(rt, "a", "commit_then_crash", k=10, j=100)
        assert ask(rt, "a", "get") == {"n": 11}  # the commit's state, not what came after it
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (2, {"n": 11})


def test_state_on_restart_reset_starts_from_nothing(store: StateStore) -> None:
    kind = counter_kind([])
    with open_runtime(store, kind) as rt:
        rt.spawn("counter", "a", state_on_restart="reset")
        ask(rt, "a", "add", k=3)
        crash(rt, "a")
        assert ask(rt, "a", "get") == {}
        assert ask(rt, "a", "started_with") == {}
        restored = events(rt, "a", "state_restored")
        assert len(restored) == 1
        assert restored[0].data["reset"] is True
        assert restored[0].data["epoch"] == 2
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (2, {})  # the reset is a commit of {}
        assert ask(rt, "a", "add", k=4) == 4


def test_state_on_restart_keep_is_the_default_and_says_what_it_restored(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=3)
        assert events(rt, "a", "state_restored") == []
        crash(rt, "a")
        assert ask(rt, "a", "get") == {"n": 3}
        (restored,) = events(rt, "a", "state_restored")
        assert restored.data["version"] == 1
        assert restored.data["bytes"] == len(b'{"n":3}')
        assert restored.data["reset"] is False
        assert restored.data["epoch"] == 2


def test_an_operator_s_reset_restarts_into_an_empty_state_once(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a", state_history=3)  # state_on_restart: keep
        ask(rt, "a", "add", k=3)
        rt.restart("a", reset_state=True)
        assert ask(rt, "a", "get") == {}
        assert ask(rt, "a", "started_with") == {}
        (restored,) = events(rt, "a", "state_restored")
        assert restored.data["reset"] is True
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (2, {})  # the reset is a commit of {}
        with pytest.raises(UnknownAgentError):  # a fresh start, as state_on_restart="reset": the old versions go
            rt.get_state("a", version=1)
        assert ask(rt, "a", "add", k=4) == 4
        rt.restart("a")  # the reset was for one restart only: this one keeps
        assert ask(rt, "a", "get") == {"n": 4}


def test_a_reset_of_an_agent_that_is_not_durable_is_refused_and_it_runs_on(store: StateStore) -> None:
    with open_runtime(store, counter_kind([], durable=False)) as rt:
        rt.spawn("counter", "a")
        restarts = rt.get_agent("a")["restart_count"]
        with pytest.raises(SpecError, match="not durable"):
            rt.restart("a", reset_state=True)
        assert rt.get_agent("a")["restart_count"] == restarts  # refused before it was stopped
        assert ask(rt, "a", "add", k=1) == 1


# -- commits that fail -----------------------------------------------------------------


def test_an_oversize_commit_fails_the_command_and_changes_nothing(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a", state_max_bytes=64)
        ask(rt, "a", "add", k=1)
        ask(rt, "a", "grow", size=10)  # small enough
        before = rt.get_state("a")
        with pytest.raises(MisterSmithError) as info:
            ask(rt, "a", "grow", size=200)
        assert info.value.code == "state_too_large"
        assert "state_max_bytes=64" in info.value.message
        assert ask(rt, "a", "get") == {"n": 1, "blob": "x" * 10}
        assert rt.get_state("a") == before
        assert ask(rt, "a", "add", k=1) == 2  # it lives on
        assert events(rt, "a", "restarted") == []


@pytest.mark.parametrize("what", ["set", "datetime", "bytes", "int_key"])
def test_an_invalid_state_fails_the_command_and_names_where(store: StateStore, what: str) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
        with pytest.raises(MisterSmithError) as info:
            ask(rt, "a", "put_bad", what=what)
        assert info.value.code == "invalid_state"
        assert "state['x']" in info.value.message
        if what == "int_key":
            assert "state['x'][1]" in info.value.message
        assert ask(rt, "a", "get") == {"n": 1}
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (1, {"n": 1})
        assert ask(rt, "a", "add", k=1) == 2
        assert events(rt, "a", "restarted") == []


def test_state_history_keeps_that_many_versions(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a", state_history=3)
        for _ in range(5):
            ask(rt, "a", "add", k=1)
        assert rt.get_state("a")["version"] == 5
        for version in (3, 4, 5):
            got = rt.get_state("a", version=version)
            assert (got["version"], got["state"]) == (version, {"n": version})
        for version in (1, 2):
            with pytest.raises(UnknownAgentError):
                rt.get_state("a", version=version)
        assert [v.version for v in store.versions("a")] == [3, 4, 5]


def test_an_unchanged_state_is_not_committed_again(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
        ask(rt, "a", "get")
        ask(rt, "a", "add", k=0)
        assert rt.get_state("a")["version"] == 1


# -- durable per spawn -----------------------------------------------------------------


def test_a_plain_kind_spawned_durable_keeps_its_state(store: StateStore) -> None:
    with open_runtime(store, counter_kind([], durable=False)) as rt:
        rt.spawn("counter", "a", durable=True)
        ask(rt, "a", "add", k=2)
        crash(rt, "a")
        assert ask(rt, "a", "get") == {"n": 2}
        assert rt.get_state("a")["state"] == {"n": 2}


def test_a_durable_kind_spawned_not_durable_keeps_nothing(store: StateStore) -> None:
    with open_runtime(store, counter_kind([], durable=True)) as rt:
        rt.spawn("counter", "a", durable=False)
        ask(rt, "a", "add", k=2)
        crash(rt, "a")
        assert ask(rt, "a", "get") == {}
        with pytest.raises(UnknownAgentError):
            rt.get_state("a")
        assert store.versions("a") == []


def test_the_kind_decides_when_a_spawn_does_not_say(store: StateStore) -> None:
    with open_runtime(store, counter_kind([], durable=False)) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=2)
        crash(rt, "a")
        assert ask(rt, "a", "get") == {}


# -- effects ---------------------------------------------------------------------------


def test_an_effect_runs_once_per_key_across_a_crash(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls)) as rt:
        rt.spawn("counter", "a")
        first = ask(rt, "a", "effect", key="k1")
        assert first == {"tag": "k1", "run": 1}
        assert ask(rt, "a", "effect", key="k1") == first
        crash(rt, "a")
        assert ask(rt, "a", "effect", key="k1") == first  # recorded: replayed, not run
        assert calls == [("k1", "ok")]
        assert ask(rt, "a", "effect", key="k2") == {"tag": "k2", "run": 2}  # another key runs
        assert calls == [("k1", "ok"), ("k2", "ok")]


def test_a_command_error_of_an_effect_is_recorded_and_raised_again(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls)) as rt:
        rt.spawn("counter", "a")
        for _ in range(2):
            with pytest.raises(CommandError) as info:
                ask(rt, "a", "effect", key="k", mode="error")
            assert (info.value.code, info.value.message) == ("effect_refused", "effect k refused")
        crash(rt, "a")
        with pytest.raises(CommandError) as info:
            ask(rt, "a", "effect", key="k", mode="ok")  # the record answers, whatever fn would do now
        assert info.value.code == "effect_refused"
        assert calls == [("k", "error")]


def test_an_effect_that_raises_anything_else_records_nothing(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls)) as rt:
        rt.spawn("counter", "a")
        assert ask(rt, "a", "effect", key="k", mode="boom") == {"raised": True}
        assert ask(rt, "a", "effect", key="k", mode="boom") == {"raised": True}
        assert calls == [("k", "boom"), ("k", "boom")]
        assert ask(rt, "a", "effect", key="k", mode="ok") == {"tag": "k", "run": 3}
        crash(rt, "a")
        assert ask(rt, "a", "effect", key="k", mode="boom") == {"tag": "k", "run": 3}
        assert len(calls) == 3


def test_an_async_effect_fn_is_awaited_and_recorded(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls)) as rt:
        rt.spawn("counter", "a")
        first = ask(rt, "a", "effect_async", key="k")
        assert first == {"tag": "k", "run": 1}
        crash(rt, "a")
        assert ask(rt, "a", "effect_async", key="k") == first
        assert calls == [("k", "async")]


def test_forget_makes_an_effect_run_again(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls)) as rt:
        rt.spawn("counter", "a")
        assert ask(rt, "a", "effect", key="k")["run"] == 1
        ask(rt, "a", "forget", key="k")
        assert ask(rt, "a", "effect", key="k")["run"] == 2
        crash(rt, "a")
        assert ask(rt, "a", "effect", key="k")["run"] == 2  # the new record stands
        ask(rt, "a", "forget", key="k")
        crash(rt, "a")  # and a forgotten record stays forgotten across a restart
        assert ask(rt, "a", "effect", key="k")["run"] == 3
        assert len(calls) == 3


def test_an_effect_in_an_agent_that_is_not_durable_is_a_spec_error(store: StateStore) -> None:
    calls: list[Any] = []
    with open_runtime(store, counter_kind(calls, durable=False)) as rt:
        rt.spawn("counter", "a")
        with pytest.raises(SpecError) as info:
            ask(rt, "a", "effect", key="k")
        assert info.value.code == "invalid_spec"
        assert calls == []
        assert ask(rt, "a", "add", k=1) == 1  # it lives on
        assert events(rt, "a", "restarted") == []


# -- fencing ---------------------------------------------------------------------------


def test_a_second_runtime_takes_over_and_the_first_is_fenced(store: StateStore) -> None:
    kind = counter_kind([])
    with open_runtime(store, kind, node_id="n1") as rt1, open_runtime(store, kind, node_id="n2") as rt2:
        rt1.spawn("counter", "a")
        ask(rt1, "a", "add", k=1)
        assert rt1.get_state("a")["epoch"] == 1

        rt2.spawn("counter", "a")  # takes a newer epoch
        assert ask(rt2, "a", "get") == {"n": 1}
        assert ask(rt2, "a", "started_with") == {"n": 1}
        (restored,) = events(rt2, "a", "state_restored")
        assert restored.data["epoch"] == 2

        assert ask(rt1, "a", "get") == {"n": 1}  # reads are no writes: not fenced yet
        errors: list[MisterSmithError] = []

        def write() -> None:
            try:
                ask(rt1, "a", "add", k=100)
            except MisterSmithError as exc:
                errors.append(exc)

        with rt1.subscribe(agent_id="a", event_types=["fenced"]) as sub:
            end_incarnation(rt1, "a", write)
            fenced = sub.get(WAIT_S)
        assert [e.code for e in errors] == ["fenced"]
        assert fenced.data["epoch"] == 1
        settle(rt1)
        assert "a" not in [info["id"] for info in rt1.list_agents()]
        assert events(rt1, "a", "restarted") == []  # its supervisor did not restart it
        assert events(rt2, "a", "fenced") == []

        assert ask(rt2, "a", "add", k=5) == 6  # the refused write changed nothing
        got = rt2.get_state("a")
        assert (got["state"], got["epoch"], got["node_id"]) == ({"n": 6}, 2, "n2")
        assert rt1.get_state("a")["state"] == {"n": 6}  # the store answers wherever it runs


def test_a_fenced_effect_record_does_not_run_twice_elsewhere(store: StateStore) -> None:
    calls: list[Any] = []
    kind = counter_kind(calls)
    with open_runtime(store, kind, node_id="n1") as rt1, open_runtime(store, kind, node_id="n2") as rt2:
        rt1.spawn("counter", "a")
        assert ask(rt1, "a", "effect", key="k")["run"] == 1
        rt2.spawn("counter", "a")
        assert ask(rt2, "a", "effect", key="k")["run"] == 1  # the record moved with the agent
        assert calls == [("k", "ok")]
        with rt1.subscribe(agent_id="a", event_types=["fenced"]) as sub:
            end_incarnation(rt1, "a", lambda: pytest.raises(MisterSmithError, ask, rt1, "a", "effect", key="k2"))
            sub.get(WAIT_S)
        # Whether or not fn ran in rt1 before its record was refused (the documented window),
        # nothing was recorded there: rt2 runs it, once.
        assert ask(rt2, "a", "effect", key="k2") == {"tag": "k2", "run": len(calls)}
        assert calls[-1] == ("k2", "ok")
        assert ask(rt2, "a", "effect", key="k2")["run"] == len(calls)
        assert calls.count(("k", "ok")) == 1


# -- get_state -------------------------------------------------------------------------


def test_get_state_of_a_durable_agent_that_committed_nothing(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        got = rt.get_state("a")
        assert (got["version"], got["state"]) == (0, {})
        got_async = asyncio.run(rt.aget_state("a"))
        assert (got_async["version"], got_async["state"]) == (0, {})
        with pytest.raises(UnknownAgentError):
            rt.get_state("a", version=1)


def test_get_state_of_an_unknown_agent(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        with pytest.raises(UnknownAgentError):
            rt.get_state("nobody")
        with pytest.raises(UnknownAgentError):
            asyncio.run(rt.aget_state("nobody"))


def test_aget_state_reads_what_get_state_reads(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a", state_history=2)
        ask(rt, "a", "add", k=1)
        ask(rt, "a", "add", k=1)
        assert asyncio.run(rt.aget_state("a")) == rt.get_state("a")
        assert asyncio.run(rt.aget_state("a", 1))["state"] == {"n": 1}


# -- recovery --------------------------------------------------------------------------


def test_a_new_runtime_on_the_same_store_resumes_with_a_new_epoch(backend: Backend) -> None:
    kind = counter_kind([])
    with open_runtime(backend.open(), kind) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=3)
        ask(rt, "a", "add", k=4)
        assert ask(rt, "a", "effect", key="k")["run"] == 1
    if backend.name == "sqlite":
        backend.opened[0].close()  # only the file remains
    again = backend.open()
    with open_runtime(again, kind) as rt:
        assert rt.get_state("a")["state"] == {"n": 7}  # readable before the agent runs
        rt.spawn("counter", "a")
        assert ask(rt, "a", "get") == {"n": 7}
        assert ask(rt, "a", "started_with") == {"n": 7}
        (restored,) = events(rt, "a", "state_restored")
        assert (restored.data["version"], restored.data["epoch"], restored.data["reset"]) == (2, 2, False)
        assert ask(rt, "a", "effect", key="k")["run"] == 1  # the record came back too
        assert ask(rt, "a", "add", k=1) == 8
        got = rt.get_state("a")
        assert (got["version"], got["epoch"], got["node_id"]) == (3, 2, rt.node_id)


def test_a_fresh_spawn_in_a_new_runtime_keeps_the_state_even_with_reset(backend: Backend) -> None:
    """``reset`` is for restarts (OTP's fresh start), not for a first start in another runtime."""
    kind = counter_kind([])
    store = backend.open()
    with open_runtime(store, kind) as rt:
        rt.spawn("counter", "a", state_on_restart="reset")
        ask(rt, "a", "add", k=3)
    with open_runtime(store, kind) as rt:
        rt.spawn("counter", "a", state_on_restart="reset")
        assert ask(rt, "a", "get") == {"n": 3}


def test_the_runtime_does_not_close_a_store_it_was_given(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
    assert store.read("a") is not None
    assert store.activate("a", "elsewhere").version == 1


def test_a_closed_store_fails_the_command_and_the_agent_keeps_its_state(store: StateStore) -> None:
    with open_runtime(store, counter_kind([])) as rt:
        rt.spawn("counter", "a")
        ask(rt, "a", "add", k=1)
        store.close()
        with pytest.raises(MisterSmithError) as info:
            ask(rt, "a", "add", k=1)
        assert info.value.code == "unavailable"
        assert ask(rt, "a", "get") == {"n": 1}
