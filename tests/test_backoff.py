"""Akka-style restart backoff, driven by the fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _helpers import WAIT_S, Worker, end_incarnation, running, settle, token
from mistersmith import (
    AgentFailedError,
    Backoff,
    ChildSpec,
    FakeClock,
    RestartingError,
    Runtime,
    SupervisorSpec,
    UnknownAgentError,
)

NO_JITTER = Backoff(min_s=1.0, max_s=8.0, factor=2.0, jitter=0.0, reset_after_s=60.0)


@pytest.fixture
def rt(clock: FakeClock) -> Iterator[Runtime]:
    root = SupervisorSpec("root", intensity=100, period_s=1.0)
    with running(clock=clock, root=root, kinds={"worker": Worker}) as runtime:
        yield runtime


def crash(rt: Runtime, agent_id: str) -> None:
    def go() -> None:
        with pytest.raises(AgentFailedError):
            rt.ask(agent_id, "exit", {"how": "crash"}, timeout=WAIT_S)

    end_incarnation(rt, agent_id, go)


def scheduled(rt: Runtime, agent_id: str) -> list[float]:
    return [e.data["delay_s"] for e in rt.history(agent_id=agent_id, event_types=["restart_scheduled"])]


def wait_out(rt: Runtime, clock: FakeClock, delay_s: float, path: str = "root") -> None:
    clock.advance(delay_s)
    settle(rt, path)


def test_delays_grow_then_cap_at_max(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    for expected in (1.0, 2.0, 4.0, 8.0, 8.0, 8.0):
        crash(rt, agent)
        assert scheduled(rt, agent)[-1] == expected
        wait_out(rt, clock, expected)
        assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    events = rt.history(agent_id=agent, event_types=["restart_scheduled"])
    assert [e.data["attempt"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].data["children"] == [agent]
    assert events[0].reason == "backoff 1.000 s"
    assert rt.get_agent(agent)["restart_count"] == 6


def test_no_restart_before_the_delay_is_over(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    crash(rt, agent)
    info = rt.get_agent(agent)
    assert info["state"] == "restarting"
    assert info["restart_at"] == pytest.approx(clock.now() + 1.0)
    assert clock.now() + 1.0 in clock.pending()
    wait_out(rt, clock, 0.9)
    assert rt.get_agent(agent)["state"] == "restarting"
    assert rt.history(agent_id=agent, event_types=["restarted"]) == []
    wait_out(rt, clock, 0.1)
    assert rt.get_agent(agent)["state"] == "idle"
    assert len(rt.history(agent_id=agent, event_types=["restarted"])) == 1


def test_backoff_resets_after_a_stable_period(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    for delay in (1.0, 2.0, 4.0):
        crash(rt, agent)
        wait_out(rt, clock, delay)
    clock.advance(30.0)  # running, but not yet for reset_after_s
    crash(rt, agent)
    assert scheduled(rt, agent)[-1] == 8.0
    wait_out(rt, clock, 8.0)
    clock.advance(60.0)  # stable for reset_after_s
    crash(rt, agent)
    assert scheduled(rt, agent)[-1] == 1.0
    wait_out(rt, clock, 1.0)
    crash(rt, agent)
    assert scheduled(rt, agent)[-1] == 2.0


def test_default_stable_period_is_max_s(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=Backoff(min_s=1.0, max_s=4.0, jitter=0.0))
    crash(rt, agent)
    wait_out(rt, clock, 1.0)
    clock.advance(3.9)
    crash(rt, agent)
    assert scheduled(rt, agent) == [1.0, 2.0]
    wait_out(rt, clock, 2.0)
    clock.advance(4.0)
    crash(rt, agent)
    assert scheduled(rt, agent) == [1.0, 2.0, 1.0]


def test_jitter_stays_within_its_bound(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=Backoff(min_s=1.0, max_s=2.0, factor=2.0, jitter=0.5))
    for base in (1.0, 2.0, 2.0):
        crash(rt, agent)
        delay = scheduled(rt, agent)[-1]
        assert base <= delay < base * 1.5
        wait_out(rt, clock, delay)
        assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_commands_during_backoff_are_rejected_with_restarting_without_a_stash(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER, stash_limit=0)
    crash(rt, agent)
    with pytest.raises(RestartingError) as err:
        rt.ask(agent, "ping", timeout=WAIT_S)
    assert err.value.code == "restarting" and err.value.agent_id == agent
    assert err.value.retry_after_s == pytest.approx(1.0)
    assert "retry in about 1.00 s" in str(err.value)
    clock.advance(0.25)
    with pytest.raises(RestartingError) as later:
        rt.send(agent, "ping")
    assert later.value.retry_after_s == pytest.approx(0.75)
    wait_out(rt, clock, 0.75)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True


def test_by_default_a_command_waits_for_the_restart_only_within_its_deadline(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)  # the default stash_limit
    crash(rt, agent)
    with pytest.raises(RestartingError) as err:  # the restart is 1 s away: past a 0.5 s deadline, at once
        rt.ask(agent, "ping", timeout=0.5)
    assert err.value.retry_after_s == pytest.approx(1.0)
    rt.send(agent, "record", {"value": 1})  # a tell has no deadline: it waits for the next incarnation
    wait_out(rt, clock, 1.0)
    assert rt.ask(agent, "recorded", timeout=WAIT_S) == [1]


def test_an_ask_during_backoff_within_its_deadline_is_answered_by_the_next_incarnation(
    rt: Runtime, clock: FakeClock
) -> None:
    import threading

    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    crash(rt, agent)
    answers: list[object] = []
    asked = threading.Thread(target=lambda: answers.append(rt.ask(agent, "ping", timeout=WAIT_S)),
                             name="test-asker")
    asked.start()
    try:
        settle(rt)
        for _ in range(1000):  # the ask is queued in the stash (no sleeping: the mailbox shows it)
            if rt.get_agent(agent)["mailbox_depth"] == 1:
                break
            asked.join(0.01)
        assert rt.get_agent(agent)["mailbox_depth"] == 1 and answers == []
        wait_out(rt, clock, 1.0)
    finally:
        asked.join(WAIT_S)
    assert answers == [{"pong": True, "agent_id": agent}]


def test_commands_during_backoff_are_stashed_up_to_the_limit(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER, stash_limit=2)
    crash(rt, agent)
    rt.send(agent, "record", {"value": 1})
    rt.send(agent, "record", {"value": 2})
    with pytest.raises(RestartingError):
        rt.send(agent, "record", {"value": 3})
    with pytest.raises(RestartingError):
        rt.ask(agent, "recorded", timeout=WAIT_S)
    wait_out(rt, clock, 1.0)
    assert rt.ask(agent, "recorded", timeout=WAIT_S) == [1, 2]


def test_supervisor_backoff_applies_to_children_without_their_own(rt: Runtime, clock: FakeClock) -> None:
    sup_backoff = Backoff(min_s=3.0, max_s=3.0, jitter=0.0)
    path = rt.add_supervisor(
        SupervisorSpec(
            "s",
            intensity=10,
            backoff=sup_backoff,
            children=(ChildSpec("inherits", "worker"), ChildSpec("own", "worker", backoff=NO_JITTER)),
        )
    )
    crash(rt, "inherits")
    crash(rt, "own")
    assert scheduled(rt, "inherits") == [3.0]
    assert scheduled(rt, "own") == [1.0]
    wait_out(rt, clock, 1.0, path)
    assert rt.get_agent("own")["state"] == "idle"
    assert rt.get_agent("inherits")["state"] == "restarting"
    wait_out(rt, clock, 2.0, path)
    assert rt.get_agent("inherits")["state"] == "idle"


def test_one_for_all_group_waits_out_one_backoff(rt: Runtime, clock: FakeClock) -> None:
    path = rt.add_supervisor(
        SupervisorSpec(
            "s",
            strategy="one_for_all",
            intensity=10,
            backoff=NO_JITTER,
            children=(ChildSpec("a", "worker"), ChildSpec("b", "worker"), ChildSpec("c", "worker")),
        )
    )
    before = {cid: token(rt, cid) for cid in "abc"}
    crash(rt, "b")
    [event] = rt.history(event_types=["restart_scheduled"])
    assert event.data["children"] == ["a", "b", "c"]
    for cid in "abc":
        assert rt.get_agent(cid)["state"] == "restarting"
        with pytest.raises(RestartingError):  # the restart is 1 s away, past this ask's deadline
            rt.ask(cid, "ping", timeout=0.5)
    wait_out(rt, clock, 1.0, path)
    for cid in "abc":
        assert token(rt, cid) != before[cid]
    restarted = [e.agent_id for e in rt.history(event_types=["restarted"]) if e.supervisor == path]
    assert restarted == ["a", "b", "c"]
    # The event is about b, whose crash started it (journal, NATS subject agents.b.status.*).
    assert event.agent_id == "b"


def test_stopping_during_backoff_cancels_the_restart(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    crash(rt, agent)
    rt.stop(agent)
    wait_out(rt, clock, 2.0)
    with pytest.raises(UnknownAgentError):
        rt.get_agent(agent)
    assert rt.history(agent_id=agent, event_types=["restarted"]) == []
    # The id is free again.
    rt.spawn("worker", agent)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 0


def test_manual_restart_during_backoff_restarts_now(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker", "b", backoff=NO_JITTER)
    crash(rt, agent)
    rt.restart(agent)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    wait_out(rt, clock, 2.0)  # the pending backoff timer must not restart it again
    assert len(rt.history(agent_id=agent, event_types=["restarted"])) == 1


def test_group_restart_uses_the_failing_childs_backoff(rt: Runtime, clock: FakeClock) -> None:
    """b has a backoff and a has none: b crashing must still wait out b's backoff."""
    path = rt.add_supervisor(
        SupervisorSpec(
            "s",
            strategy="one_for_all",
            intensity=10,
            children=(ChildSpec("a", "worker"), ChildSpec("b", "worker", backoff=NO_JITTER)),
        )
    )
    crash(rt, "b")
    crash_delays = [e.data["delay_s"] for e in rt.history(event_types=["restart_scheduled"])]
    assert crash_delays == [1.0]
    assert rt.get_agent("b")["state"] == "restarting"
    wait_out(rt, clock, 1.0, path)
    assert rt.get_agent("b")["state"] == "idle"


def test_backoff_on_the_real_clock(real_runtime: Runtime) -> None:
    agent = real_runtime.spawn("echo", backoff=Backoff(min_s=0.02, max_s=0.05, jitter=0.0))
    with real_runtime.subscribe(agent_id=agent, event_types=["restart_scheduled", "restarted"]) as sub:
        with pytest.raises(AgentFailedError):
            real_runtime.ask(agent, "fail", timeout=WAIT_S)
        assert sub.get(WAIT_S).event_type == "restart_scheduled"
        assert sub.get(WAIT_S).event_type == "restarted"
    assert real_runtime.ask(agent, "echo", {"x": 1}, timeout=WAIT_S) == {"x": 1}


def test_close_with_a_restart_pending(clock: FakeClock) -> None:
    with running(clock=clock, root=SupervisorSpec("root", intensity=5), kinds={"worker": Worker}) as rt:
        agent = rt.spawn("worker", backoff=NO_JITTER)
        crash(rt, agent)
    assert rt.closed
    clock.advance(5.0)  # the backoff timer fires into a closed runtime: harmless
    assert rt.history(agent_id=agent, event_types=["restarted"]) == []


def test_a_command_queued_behind_a_crash_hears_restarting_when_the_backoff_outlasts_its_deadline(
    clock: FakeClock,
) -> None:
    import threading

    from mistersmith import Agent, command

    release = threading.Event()
    entered = threading.Event()

    noted: list[str] = []

    class Crashes(Agent):
        @command
        def note(self) -> dict[str, bool]:
            noted.append(self.agent_id)
            return {"noted": True}

        @command
        def crash_later(self) -> None:
            entered.set()
            release.wait(WAIT_S)
            raise RuntimeError("crashed with commands queued behind")

    root = SupervisorSpec("root", intensity=100, period_s=1.0)
    with running(clock=clock, root=root, kinds={"crashes": Crashes}) as rt:
        agent = rt.spawn("crashes", "c", backoff=NO_JITTER)  # the restart comes 1 s after the crash
        rt.send(agent, "crash_later")
        assert entered.wait(WAIT_S)
        outcomes: dict[str, object] = {}

        def ask(name: str, timeout: float) -> None:
            try:
                outcomes[name] = rt.ask(agent, "note" if name == "short" else "ping", timeout=timeout)
            except Exception as exc:
                outcomes[name] = exc

        short = threading.Thread(target=ask, args=("short", 5.0), name="test-short")
        long_ = threading.Thread(target=ask, args=("long", WAIT_S * 3), name="test-long")
        for t in (short, long_):
            t.start()
        for _ in range(1000):  # both queued behind the busy handler (the mailbox shows it)
            if rt.get_agent(agent)["mailbox_depth"] == 2:
                break
            entered.wait(0.01)
        assert rt.get_agent(agent)["mailbox_depth"] == 2
        clock.advance(4.5)  # the short ask's deadline is now 0.5 s away: the 1 s backoff outlasts it
        release.set()
        short.join(WAIT_S)
        assert isinstance(outcomes.get("short"), RestartingError), outcomes  # at once, not a timeout
        assert outcomes["short"].retry_after_s == pytest.approx(1.0)  # type: ignore[union-attr]
        assert "long" not in outcomes  # still waiting: the restart comes within its deadline
        wait_out(rt, clock, 1.0)
        long_.join(WAIT_S)
        assert outcomes["long"] == {"pong": True, "agent_id": agent}
        assert noted == []  # the command its caller heard `restarting` for never ran
