"""``self.breaker`` and ``self.retry`` in agents, sync and async: a breaker outlives a restart, its opening
is one ``breaker_open`` event (the agent lives), its state shows in the agent's status, the node's stats
and ``/metrics``; a retry never sleeps past the command's deadlines.

Time is a ``FakeClock``: a breaker's ``reset_s`` passes with ``clock.advance``, and retries sleep with a
fake that moves the clock. Nothing sleeps to synchronise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from _helpers import WAIT_S, end_incarnation, running
from mistersmith import (
    Agent,
    AgentFailedError,
    BreakerOpenError,
    CommandError,
    FakeClock,
    Runtime,
    SpecError,
    SupervisorSpec,
    command,
)

if TYPE_CHECKING:
    from conftest_pg import JournalNode

ROOT = SupervisorSpec("root", intensity=50, backoff=None)


class Down(Exception):
    """The dependency failed."""


class Dependency:
    """A fake dependency the test turns on and off; counts the calls that reached it."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if not self.up:
            raise Down("connection refused")
        return "pong"


def kinds(dep: Dependency, clock: FakeClock) -> tuple[type[Agent], type[Agent]]:
    class SyncCaller(Agent):
        """Lets the dependency's error crash it: the supervisor restarts it."""

        kind = "sync_caller"

        @command
        def call(self) -> str:
            with self.breaker("dep", failure_threshold=2, reset_s=10):
                return dep()

        @command
        def other_settings(self) -> None:
            self.breaker("dep", failure_threshold=3, reset_s=10)

        @command
        def retried(self, seed: int = 0) -> dict[str, Any]:
            slept: list[float] = []

            def sleep(s: float) -> None:
                slept.append(s)
                clock.advance(s)

            try:
                self.retry(attempts=None, initial_s=1.0, jitter_s=0.0, sleep=sleep)(dep)
            except Down as exc:
                return {"error": str(exc), "slept": slept, "calls": dep.calls}
            return {"slept": slept}

    class AsyncCaller(Agent):
        """Answers the dependency's error with a ``CommandError``: it lives on."""

        kind = "async_caller"

        @command
        async def call(self) -> str:
            breaker = self.breaker("dep", failure_threshold=2, reset_s=10)
            try:
                return await breaker.acall(self._dep)
            except Down as exc:
                raise CommandError(f"dependency down: {exc}", code="dep_down") from exc

        async def _dep(self) -> str:
            return dep()

        @command
        async def retried(self) -> dict[str, Any]:
            slept: list[float] = []

            async def sleep(s: float) -> None:
                slept.append(s)
                clock.advance(s)

            try:
                async for attempt in self.aretry(attempts=None, initial_s=1.0, jitter_s=0.0, sleep=sleep):
                    with attempt:
                        await self._dep()
            except Down as exc:
                return {"error": str(exc), "slept": slept}
            return {"slept": slept}

    return SyncCaller, AsyncCaller


@pytest.fixture
def dep() -> Dependency:
    return Dependency()


@pytest.fixture
def rt(clock: FakeClock, dep: Dependency) -> Iterator[Runtime]:
    with running(clock=clock, root=ROOT) as runtime:
        for cls in kinds(dep, clock):
            runtime.register(str(cls.kind), cls)
        yield runtime


def breaker_events(rt: Runtime, agent_id: str) -> list[Any]:
    return rt.history(agent_id=agent_id, event_types=["breaker_open"])


def crash_call(rt: Runtime, agent_id: str) -> None:
    """``call`` that crashes the sync caller; returns once its supervisor restarted it."""

    def trigger() -> None:
        with pytest.raises(AgentFailedError):
            rt.ask(agent_id, "call", timeout=WAIT_S)

    end_incarnation(rt, agent_id, trigger)


def test_sync_breaker_survives_restarts_and_opens_once(rt: Runtime, clock: FakeClock, dep: Dependency) -> None:
    rt.spawn("sync_caller", "s1")
    assert rt.get_agent("s1")["breakers"] == {}
    crash_call(rt, "s1")
    assert rt.get_agent("s1")["restart_count"] == 1
    assert rt.get_agent("s1")["breakers"]["dep"] | {"reset_s": 0} == {
        "state": "closed", "failures": 1, "failure_threshold": 2, "reset_s": 0, "openings": 0, "retry_after_s": None}
    crash_call(rt, "s1")  # a new incarnation, the same breaker: its second failure opens it
    assert rt.get_agent("s1")["restart_count"] == 2
    assert dep.calls == 2
    (event,) = breaker_events(rt, "s1")
    assert event.data["breaker"] == "dep" and event.data["failures"] == 2 and event.data["error"] == "Down"
    assert "opened after 2 consecutive failures" in (event.reason or "")
    assert event.kind == "sync_caller" and event.restart_count == 1  # the incarnation that saw it open

    # Open: refused without calling the dependency; the agent lives (an error reply, no restart).
    with pytest.raises(BreakerOpenError) as refused:
        rt.ask("s1", "call", timeout=WAIT_S)
    assert refused.value.code == "breaker_open" and dep.calls == 2
    info = rt.get_agent("s1")
    assert info["restart_count"] == 2 and info["state"] == "idle"
    assert info["breakers"]["dep"]["state"] == "open" and info["breakers"]["dep"]["retry_after_s"] == 10.0
    assert [a["breakers"]["dep"]["state"] for a in rt.list_agents() if a["id"] == "s1"] == ["open"]
    stats = rt.stats()
    assert (stats["breakers_closed"], stats["breakers_open"], stats["breakers_half_open"]) == (0, 1, 0)

    # reset_s later: half_open, and one trial; its success closes the breaker.
    clock.advance(10.0)
    assert rt.get_agent("s1")["breakers"]["dep"]["state"] == "half_open"
    assert rt.stats()["breakers_half_open"] == 1
    dep.up = True
    assert rt.ask("s1", "call", timeout=WAIT_S) == "pong"
    assert rt.get_agent("s1")["breakers"]["dep"]["state"] == "closed"
    assert rt.stats()["breakers_closed"] == 1 and rt.stats()["breakers_open"] == 0
    assert len(breaker_events(rt, "s1")) == 1, "one event per opening"
    assert rt.get_agent("s1")["restart_count"] == 2


def test_async_breaker_survives_a_restart_and_a_failed_trial_reopens(
        rt: Runtime, clock: FakeClock, dep: Dependency) -> None:
    rt.spawn("async_caller", "a1")
    for _ in range(2):
        with pytest.raises(CommandError) as err:
            rt.ask("a1", "call", timeout=WAIT_S)
        assert err.value.code == "dep_down"
    assert rt.get_agent("a1")["breakers"]["dep"]["state"] == "open"
    assert len(breaker_events(rt, "a1")) == 1
    rt.restart("a1")
    assert rt.get_agent("a1")["restart_count"] == 1
    assert rt.get_agent("a1")["breakers"]["dep"]["state"] == "open", "a restart does not reset it"
    with pytest.raises(BreakerOpenError):
        rt.ask("a1", "call", timeout=WAIT_S)
    clock.advance(10.0)
    with pytest.raises(CommandError):  # the trial fails: open again, a second opening
        rt.ask("a1", "call", timeout=WAIT_S)
    first, second = breaker_events(rt, "a1")
    assert "trial call failed" in (second.reason or "") and second.data["openings"] == 2
    assert rt.get_agent("a1")["breakers"]["dep"] | {"reset_s": 0} == {
        "state": "open", "failures": 2, "failure_threshold": 2, "reset_s": 0, "openings": 2, "retry_after_s": 10.0}
    assert dep.calls == 3
    assert rt.get_agent("a1")["restart_count"] == 1 and rt.get_agent("a1")["state"] == "idle"


def test_asking_for_a_breaker_with_other_settings_is_an_error_reply(rt: Runtime) -> None:
    rt.spawn("sync_caller", "s1")
    with pytest.raises(AgentFailedError):
        rt.ask("s1", "call", timeout=WAIT_S)
    with pytest.raises(SpecError, match="failure_threshold=2"):
        rt.ask("s1", "other_settings", timeout=WAIT_S)


def test_breaker_state_in_metrics(rt: Runtime) -> None:
    rt.spawn("async_caller", "a1")
    rt.spawn("async_caller", "a2")
    for agent in ("a1", "a1", "a2"):
        with pytest.raises(CommandError):
            rt.ask(agent, "call", timeout=WAIT_S)
    from mistersmith.web import Backends, WebApp, WebConfig

    app = WebApp(Backends(rt), WebConfig(port=0))
    try:
        text = app.metrics.render()
    finally:
        app.metrics.shutdown()
    assert 'mistersmith_runtime{name="breakers_open"} 1' in text
    assert 'mistersmith_runtime{name="breakers_closed"} 1' in text
    assert 'mistersmith_runtime{name="breakers_half_open"} 0' in text


def test_sync_retry_stops_before_the_command_timeout(clock: FakeClock, dep: Dependency) -> None:
    with running(clock=clock, root=ROOT) as rt:
        sync_kind, _ = kinds(dep, clock)
        rt.register("sync_caller", sync_kind)
        rt.spawn("sync_caller", "r1", command_timeout_s=10.0)
        outcome = rt.ask("r1", "retried", timeout=WAIT_S * 100)
    # Attempts at t=0, 1, 3, 7; the next sleep (8 s) would end past the 10 s command_timeout_s.
    assert outcome == {"error": "connection refused", "slept": [1.0, 2.0, 4.0], "calls": 4}


def test_async_retry_stops_before_the_callers_timeout(rt: Runtime) -> None:
    rt.spawn("async_caller", "r2")
    outcome = rt.ask("r2", "retried", timeout=5.0)  # the caller stops waiting 5 s (fake) from now
    assert outcome == {"error": "connection refused", "slept": [1.0, 2.0]}


def test_breaker_open_is_journaled(node: JournalNode, dep: Dependency) -> None:
    rt = node.runtime
    clock = FakeClock()  # only the retry kind reads it; breakers here read the node's clock
    _, async_kind = kinds(dep, clock)
    rt.register("async_caller", async_kind)
    rt.spawn("async_caller", "j1")
    for _ in range(2):
        with pytest.raises(CommandError):
            rt.ask("j1", "call", timeout=WAIT_S)
    with pytest.raises(BreakerOpenError):
        rt.ask("j1", "call", timeout=WAIT_S)
    assert node.journal.flush(WAIT_S)
    (journaled,) = node.journal.replay(agent_id="j1", event_types=["breaker_open"])
    (kept,) = breaker_events(rt, "j1")
    assert journaled == kept
    assert journaled.data["breaker"] == "dep" and journaled.kind == "async_caller"
    assert rt.get_agent("j1")["restart_count"] == 0, "the agent lives"


def test_retry_stops_before_the_idle_timeout(rt: Runtime) -> None:
    rt.spawn("async_caller", "r3", idle_timeout_s=2.5)  # no progress for 2.5 s (fake) fails the command
    outcome = rt.ask("r3", "retried", timeout=WAIT_S * 100)
    assert outcome == {"error": "connection refused", "slept": [1.0]}  # a 2 s sleep from t=1 would pass t=2.5
