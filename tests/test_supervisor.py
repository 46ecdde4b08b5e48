"""Supervisor semantics beyond the matrix: intensity, escalation, start, shutdown, trees."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _helpers import (
    WAIT_S,
    Gate,
    Worker,
    blocker_kind,
    child_ids,
    end_incarnation,
    recording_kind,
    running,
    settle,
    token,
)
from mistersmith import (
    Agent,
    AgentExistsError,
    AgentFailedError,
    ChildSpec,
    FakeClock,
    FatalError,
    Runtime,
    RuntimeClosedError,
    SpecError,
    StartError,
    SupervisorSpec,
    UnknownAgentError,
    command,
)


def crash_only(rt: Runtime, agent_id: str) -> None:
    with pytest.raises(AgentFailedError):
        rt.ask(agent_id, "exit", {"how": "crash"}, timeout=WAIT_S)


def crash(rt: Runtime, agent_id: str) -> None:
    """Crash the agent and wait until its supervisor has handled the exit."""
    end_incarnation(rt, agent_id, lambda: crash_only(rt, agent_id))


@pytest.fixture
def rt(clock: FakeClock) -> Iterator[Runtime]:
    root = SupervisorSpec("root", intensity=10, period_s=5.0)
    with running(clock=clock, root=root, kinds={"worker": Worker}) as runtime:
        yield runtime


# -- restart intensity: a sliding window on the fake clock ---------------------------------


def test_intensity_window_slides(rt: Runtime, clock: FakeClock) -> None:
    """intensity=2 in period_s=10: restarts spread beyond the window never escalate."""
    rt.add_supervisor(SupervisorSpec("s", intensity=2, period_s=10.0, children=(ChildSpec("w", "worker"),)))
    crash(rt, "w")  # t=0: 1 in window
    clock.advance(4.0)
    crash(rt, "w")  # t=4: 2 in window
    clock.advance(7.0)
    crash(rt, "w")  # t=11: the t=0 restart fell out; 2 in window
    clock.advance(9.5)
    crash(rt, "w")  # t=20.5: the t=4 one fell out; 2 in window
    assert rt.history(event_types=["intensity_exceeded", "escalated"]) == []
    assert rt.ask("w", "whoami", timeout=WAIT_S)["restart_count"] == 4
    assert rt.stats()["restarts"] == 4


def test_intensity_exceeded_within_period_escalates(rt: Runtime, clock: FakeClock) -> None:
    rt.add_supervisor(SupervisorSpec("s", intensity=2, period_s=10.0, children=(ChildSpec("w", "worker"),)))
    crash(rt, "w")
    clock.advance(9.0)
    crash(rt, "w")
    assert rt.history(event_types=["intensity_exceeded"]) == []
    with rt.subscribe(agent_id="s", event_types=["restarted"]) as sub:
        clock.advance(0.5)
        crash_only(rt, "w")  # a third restart within 10 s: more than intensity=2
        sub.get(WAIT_S)
    exceeded = rt.history(event_types=["intensity_exceeded"])
    assert [e.supervisor for e in exceeded] == ["root/s"]


def test_intensity_zero_means_no_restart_at_all(rt: Runtime) -> None:
    rt.add_supervisor(SupervisorSpec("s", intensity=0, restart="transient", children=(ChildSpec("w", "worker"),)))
    with rt.subscribe(agent_id="s", event_types=["stopped"]) as sub:
        crash_only(rt, "w")
        sub.get(WAIT_S)
    assert [e.supervisor for e in rt.history(event_types=["escalated"])] == ["root/s"]
    assert rt.history(agent_id="w", event_types=["restarted"]) == []


# -- escalation through nested supervisors ---------------------------------------------


def test_child_supervisor_escalates_and_permanent_parent_restarts_it(rt: Runtime) -> None:
    children = tuple(ChildSpec(cid, "worker") for cid in ("w1", "w2", "w3"))
    rt.add_supervisor(SupervisorSpec("workers", intensity=1, period_s=5.0, children=children))
    rt.spawn("worker", "bystander")
    bystander = token(rt, "bystander")
    before = {cid: token(rt, cid) for cid in ("w1", "w2", "w3")}
    crash(rt, "w2")  # the one restart allowed
    assert rt.history(event_types=["intensity_exceeded"]) == []

    with rt.subscribe(agent_id="workers", event_types=["restarted"]) as sub:
        crash_only(rt, "w2")  # one too many: "workers" gives up and escalates
        sub.get(WAIT_S)
    settle(rt)

    tail = [
        (e.event_type, e.supervisor, e.agent_id)
        for e in rt.history()
        if e.event_type in ("intensity_exceeded", "stopped", "escalated", "restarted")
    ][-6:]
    assert tail[:4] == [
        ("intensity_exceeded", "root/workers", None),
        ("stopped", "root/workers", "w3"),  # reverse start order; w2 is already down
        ("stopped", "root/workers", "w1"),
        ("escalated", "root/workers", None),
    ]
    assert ("restarted", "root", "workers") in tail[4:]
    # A fresh supervisor, with fresh children, in the same place.
    assert child_ids(rt, "root/workers") == ["w1", "w2", "w3"]
    assert rt.count_children("root/workers")["active"] == 3
    for cid in ("w1", "w2", "w3"):
        assert token(rt, cid) != before[cid]
    assert token(rt, "bystander") == bystander
    intensity = rt.history(event_types=["intensity_exceeded"])[0]
    assert intensity.data["child"] == "w2"
    assert intensity.kind == "supervisor"


def test_intensity_exceeded_names_the_child_that_exited(rt: Runtime) -> None:
    """OTP reports reached_max_restart_intensity with the child that terminated."""
    children = tuple(ChildSpec(cid, "worker") for cid in ("a", "b", "c"))
    rt.add_supervisor(SupervisorSpec("s", strategy="one_for_all", intensity=0, restart="temporary", children=children))
    with rt.subscribe(event_types=["escalated"]) as sub:
        crash_only(rt, "b")
        sub.get(WAIT_S)
    [event] = rt.history(event_types=["intensity_exceeded"])
    assert event.data["child"] == "b"


def test_restarted_simple_one_for_one_pool_starts_empty(rt: Runtime) -> None:
    """OTP: dynamic children die with their supervisor; a restarted pool has none."""
    rt.add_supervisor(
        SupervisorSpec("pool", strategy="simple_one_for_one", intensity=0, template=ChildSpec(None, "worker"))
    )
    for cid in ("p1", "p2"):
        rt.spawn(None, cid, supervisor="root/pool")
    with rt.subscribe(agent_id="pool", event_types=["restarted"]) as sub:
        crash_only(rt, "p1")
        sub.get(WAIT_S)
    settle(rt)
    assert rt.which_children("root/pool") == []
    assert rt.list_agents() == []
    rt.spawn(None, "p1", supervisor="root/pool")
    assert rt.ask("p1", "ping", timeout=WAIT_S)["pong"] is True


def test_transient_child_supervisor_is_not_restarted_after_escalating(rt: Runtime) -> None:
    """OTP: a supervisor that gives up exits with reason ``shutdown``, which a transient child may do."""
    rt.add_supervisor(
        SupervisorSpec("s", intensity=0, restart="transient", children=(ChildSpec("w", "worker"),))
    )
    with rt.subscribe(agent_id="s", event_types=["stopped"]) as sub:
        crash_only(rt, "w")
        sub.get(WAIT_S)
    settle(rt)
    assert [c["state"] for c in rt.which_children("root") if c["id"] == "s"] == ["stopped"]
    with pytest.raises(UnknownAgentError):
        rt.which_children("root/s")
    with pytest.raises(UnknownAgentError):
        rt.get_agent("w")
    assert rt.history(agent_id="s", event_types=["restarted"]) == []


def test_escalation_climbs_two_levels(rt: Runtime) -> None:
    """leaf (intensity 0) gives up; mid (intensity 0) cannot restart it and gives up; root restarts mid."""
    leaf = SupervisorSpec("leaf", intensity=0, children=(ChildSpec("w", "worker"),))
    rt.add_supervisor(SupervisorSpec("mid", intensity=0, children=(leaf,)))
    assert child_ids(rt, "root/mid/leaf") == ["w"]
    before = token(rt, "w")
    with rt.subscribe(agent_id="mid", event_types=["restarted"]) as sub:
        crash_only(rt, "w")
        sub.get(WAIT_S)
    settle(rt)
    escalated = [e.supervisor for e in rt.history(event_types=["escalated"])]
    assert escalated == ["root/mid/leaf", "root/mid"]
    assert [e.supervisor for e in rt.history(event_types=["intensity_exceeded"])] == ["root/mid/leaf", "root/mid"]
    assert token(rt, "w") != before
    assert rt.fatal_error is None


def test_root_exceeding_intensity_is_fatal_and_closes_cleanly(clock: FakeClock) -> None:
    root = SupervisorSpec("root", intensity=0, children=(ChildSpec("a", "worker"), ChildSpec("b", "worker")))
    with running(clock=clock, root=root, kinds={"worker": Worker}) as rt:
        with pytest.raises(AgentFailedError):
            rt.ask("a", "exit", {"how": "crash"}, timeout=WAIT_S)
        assert rt.wait_closed(WAIT_S)
        assert rt.closed
        assert isinstance(rt.fatal_error, FatalError)
        assert "root" in str(rt.fatal_error)
        events = [(e.event_type, e.agent_id) for e in rt.history() if e.supervisor == "root"]
        assert ("intensity_exceeded", None) in events
        assert ("stopped", "b") in events
        assert ("escalated", None) in events
        with pytest.raises(RuntimeClosedError) as closed:
            rt.ask("b", "whoami", timeout=WAIT_S)
        assert closed.value.__cause__ is rt.fatal_error
        with pytest.raises(RuntimeClosedError):
            rt.spawn("worker")
        assert rt.list_agents() == []


def test_escalation_reaching_a_root_with_no_restarts_left_is_fatal(clock: FakeClock) -> None:
    root = SupervisorSpec("root", intensity=0, children=(SupervisorSpec("s", intensity=0, children=(ChildSpec("w", "worker"),)),))
    with running(clock=clock, root=root, kinds={"worker": Worker}) as rt:
        with pytest.raises(AgentFailedError):
            rt.ask("w", "exit", {"how": "crash"}, timeout=WAIT_S)
        assert rt.wait_closed(WAIT_S)
        assert isinstance(rt.fatal_error, FatalError)
        assert [e.supervisor for e in rt.history(event_types=["escalated"])] == ["root/s", "root"]


# -- start order and start failure -------------------------------------------------


def test_children_start_in_order_and_start_returns_after_on_start(clock: FakeClock) -> None:
    log: list[tuple[str, str]] = []

    class Slow(recording_kind(log)):  # type: ignore[misc]
        def on_start(self) -> None:
            threading.Event().wait(0.02)  # a slow start that a premature return would miss
            super().on_start()

    children = tuple(ChildSpec(cid, Slow) for cid in ("a", "b", "c"))
    with running(clock=clock, root=SupervisorSpec("root", children=children)) as rt:
        assert log == [("start", "a"), ("start", "b"), ("start", "c")]
        assert [e.agent_id for e in rt.history(event_types=["started"]) if e.supervisor == "root"] == ["a", "b", "c"]
        rt.spawn(Slow, "d")
        assert log[-1] == ("start", "d")
        assert rt.get_agent("d")["state"] == "idle"
        log.clear()
    assert log == [("stop", "d"), ("stop", "c"), ("stop", "b"), ("stop", "a")]


def test_start_failure_rolls_back_in_reverse_order(rt: Runtime) -> None:
    log: list[tuple[str, str]] = []
    kind = recording_kind(log, fail_start=frozenset({"bad"}))
    spec = SupervisorSpec("s", children=tuple(ChildSpec(cid, kind) for cid in ("a1", "a2", "bad", "c")))
    with pytest.raises(StartError) as err:
        rt.add_supervisor(spec)
    assert log == [("start", "a1"), ("start", "a2"), ("start_failed", "bad"), ("stop", "a2"), ("stop", "a1")]
    assert err.value.child == "s"
    cause = err.value.__cause__
    assert isinstance(cause, StartError) and cause.child == "bad"
    assert "refuses to start" in str(cause)
    # Nothing of it is left behind.
    assert child_ids(rt) == []
    with pytest.raises(UnknownAgentError):
        rt.which_children("root/s")
    assert rt.list_agents() == []
    # The ids are free again.
    rt.spawn("worker", "a1")


def test_runtime_with_a_root_child_that_fails_to_start(clock: FakeClock) -> None:
    log: list[tuple[str, str]] = []
    kind = recording_kind(log, fail_start=frozenset({"bad"}))
    root = SupervisorSpec("root", children=(ChildSpec("a", kind), ChildSpec("bad", kind), ChildSpec("c", kind)))
    with pytest.raises(StartError, match="bad"):
        Runtime(clock=clock, root=root)
    assert log == [("start", "a"), ("start_failed", "bad"), ("stop", "a")]


def test_spawn_whose_on_start_fails(rt: Runtime) -> None:
    log: list[tuple[str, str]] = []
    rt.spawn("worker", "neighbour")
    with pytest.raises(StartError) as err:
        rt.spawn(recording_kind(log, fail_start=frozenset({"x"})), "x")
    assert err.value.child == "x"
    assert isinstance(err.value.__cause__, RuntimeError)
    assert "x" not in [a["id"] for a in rt.list_agents()]
    assert rt.history(agent_id="x", event_types=["failed"])[0].data == {"phase": "start"}
    assert rt.ask("neighbour", "ping", timeout=WAIT_S)["pong"] is True
    assert rt.stats()["restarts"] == 0  # a failed start_child is not a restart


def test_failing_restarts_are_retried_and_count_against_intensity(rt: Runtime) -> None:
    """OTP: a child that fails to restart is tried again; each try counts."""

    class Fragile(Worker):
        def on_start(self) -> None:
            if self.context.restart_count:
                raise RuntimeError("cannot come back")

    rt.add_supervisor(SupervisorSpec("s", intensity=3, restart="temporary", children=(ChildSpec("f", Fragile),)))
    with rt.subscribe(event_types=["escalated"]) as sub:
        with pytest.raises(AgentFailedError):
            rt.ask("f", "exit", {"how": "crash"}, timeout=WAIT_S)
        assert sub.get(WAIT_S).supervisor == "root/s"
    failed_starts = [e for e in rt.history(agent_id="f", event_types=["failed"]) if e.data.get("phase") == "start"]
    assert len(failed_starts) == 3  # restarts 1..3 were allowed and each failed; the 4th exceeded


def test_duplicate_ids_are_refused_everywhere(rt: Runtime) -> None:
    rt.spawn("worker", "x")
    with pytest.raises(AgentExistsError):
        rt.spawn("worker", "x")
    rt.add_supervisor(SupervisorSpec("s"))
    with pytest.raises(AgentExistsError):
        rt.spawn("worker", "x", supervisor="root/s")
    with pytest.raises(AgentExistsError):
        rt.add_supervisor(SupervisorSpec("s"))
    assert rt.ask("x", "ping", timeout=WAIT_S)["pong"] is True


def test_spawn_refuses_unknown_kinds_and_supervisors(rt: Runtime) -> None:
    with pytest.raises(SpecError, match="kind"):
        rt.spawn("nope")
    with pytest.raises(UnknownAgentError):
        rt.spawn("worker", supervisor="root/none")
    rt.add_supervisor(SupervisorSpec("pool", strategy="simple_one_for_one", template=ChildSpec(None, "worker")))
    with pytest.raises(SpecError, match="only starts"):
        rt.spawn("echo", supervisor="root/pool")
    with pytest.raises(SpecError) as err:
        rt.spawn("worker", "w9", mailbox_size=0)
    assert err.value.child == "w9" and err.value.key == "mailbox_size"
    assert rt.list_agents() == []


# -- shutdown -----------------------------------------------------------------------


def test_shutdown_timeout_abandons_and_counts_the_thread(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate), "stuck", shutdown_s=0.1)
    try:
        rt.send(agent, "block_hard")
        assert gate.entered.wait(WAIT_S)
        started = time.monotonic()
        rt.stop(agent)
        assert time.monotonic() - started < WAIT_S / 2  # bounded, not waiting for the handler
        timeout = rt.history(agent_id=agent, event_types=["shutdown_timeout"])
        assert len(timeout) == 1 and timeout[0].data["shutdown_s"] == 0.1
        assert rt.stats()["abandoned_threads"] == 1
        assert rt.stats()["leaked_threads"] == 1
        assert agent not in [a["id"] for a in rt.list_agents()]
    finally:
        gate.release.set()
    assert gate.join_all()
    assert rt.stats()["leaked_threads"] == 0
    assert rt.stats()["abandoned_threads"] == 1


def test_cooperative_handler_stops_within_shutdown(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate), "coop", shutdown_s=WAIT_S)
    rt.send(agent, "block")
    assert gate.entered.wait(WAIT_S)
    rt.stop(agent)  # sets `cancelled`, which the handler watches
    assert gate.join_all()
    assert rt.history(agent_id=agent, event_types=["shutdown_timeout"]) == []
    assert rt.stats()["abandoned_threads"] == 0


def test_close_stops_everything_in_reverse_order(clock: FakeClock) -> None:
    log: list[tuple[str, str]] = []
    kind = recording_kind(log)
    inner = SupervisorSpec("inner", children=(ChildSpec("i1", kind), ChildSpec("i2", kind)))
    root = SupervisorSpec("root", children=(ChildSpec("a", kind), inner, ChildSpec("z", kind)))
    with Runtime(clock=clock, root=root) as rt:
        rt.spawn(kind, "late")
        log.clear()
    assert log == [("stop", "late"), ("stop", "z"), ("stop", "i2"), ("stop", "i1"), ("stop", "a")]
    assert rt.closed
    rt.close()  # harmless twice
    with pytest.raises(RuntimeClosedError, match="closed"):
        rt.spawn("echo")


def test_close_is_bounded_by_shutdown_s(clock: FakeClock) -> None:
    gate = Gate()
    rt = Runtime(clock=clock)
    try:
        agent = rt.spawn(blocker_kind(gate), "stuck", shutdown_s=0.1)
        rt.spawn("echo", "fine")
        rt.send(agent, "block_hard")
        assert gate.entered.wait(WAIT_S)
        started = time.monotonic()
        rt.close()
        assert time.monotonic() - started < WAIT_S / 2
        assert rt.closed
        assert [e.agent_id for e in rt.history(event_types=["shutdown_timeout"])] == ["stuck"]
        assert rt.stats()["leaked_threads"] == 1
    finally:
        gate.release.set()
        rt.close()
    assert gate.join_all()
    assert rt.stats()["leaked_threads"] == 0


def test_simple_one_for_one_children_are_stopped_together(rt: Runtime) -> None:
    """OTP terminates dynamic children concurrently: each on_stop here waits for all the others."""
    n = 5
    barrier = threading.Barrier(n, timeout=2.0)
    passed: list[str] = []

    class Together(Worker):
        def on_stop(self) -> None:
            barrier.wait()
            passed.append(self.agent_id)

    rt.add_supervisor(SupervisorSpec("pool", strategy="simple_one_for_one", template=ChildSpec(None, Together)))
    for i in range(n):
        rt.spawn(None, f"p{i}", supervisor="root/pool")
    rt.close()
    assert sorted(passed) == [f"p{i}" for i in range(n)]


# -- one_for_all at scale ------------------------------------------------------------


def test_one_for_all_restart_of_1000_children(rt: Runtime) -> None:
    n = 1000
    ids = [f"w{i}" for i in range(n)]
    spec = SupervisorSpec("big", strategy="one_for_all", children=tuple(ChildSpec(cid, "worker") for cid in ids))
    rt.add_supervisor(spec)
    assert rt.count_children("root/big") == {"specs": n, "active": n, "supervisors": 0, "workers": n}
    crash(rt, "w500")
    restarted = [e.agent_id for e in rt.history(event_types=["restarted"]) if e.supervisor == "root/big"]
    assert restarted == ids
    stopped = [e.agent_id for e in rt.history(event_types=["stopped"]) if e.supervisor == "root/big"]
    assert stopped == [cid for cid in reversed(ids) if cid != "w500"]
    assert all(rt.get_agent(cid)["restart_count"] == 1 for cid in ids)
    assert all(rt.ask(cid, "ping", timeout=WAIT_S)["pong"] for cid in ids)
    assert rt.stats()["restarts"] == 1


# -- trees and introspection ----------------------------------------------------------


def test_tree_snapshot_and_introspection(rt: Runtime) -> None:
    rt.add_supervisor(SupervisorSpec("workers", strategy="rest_for_one", children=(ChildSpec("w1", "worker"),)))
    rt.add_supervisor(SupervisorSpec("inner"), parent="root/workers")
    rt.add_supervisor(SupervisorSpec("pool", strategy="simple_one_for_one", template=ChildSpec(None, "echo")))
    rt.spawn("worker", "w2", config={"n": 2}, supervisor="root/workers")
    rt.spawn(None, "p1", supervisor="root/pool")
    rt.spawn("echo", "solo", restart="transient")

    tree = rt.tree()
    assert json.loads(json.dumps(tree)) == tree  # JSON-compatible
    assert tree["path"] == "root" and tree["node_id"] == rt.node_id
    top = {c["id"]: c for c in tree["children"]}
    assert list(top) == ["workers", "pool", "solo"]
    workers = top["workers"]
    assert workers["type"] == "supervisor" and workers["path"] == "root/workers"
    assert workers["strategy"] == "rest_for_one"
    assert [c["id"] for c in workers["children"]] == ["w1", "inner", "w2"]
    assert workers["children"][1]["path"] == "root/workers/inner"
    assert workers["children"][2]["config"] == {"n": 2}
    assert [c["id"] for c in top["pool"]["children"]] == ["p1"]
    assert top["solo"]["restart"] == "transient" and top["solo"]["state"] == "idle"

    assert child_ids(rt, "root/workers") == ["w1", "inner", "w2"]
    assert rt.which_children("root/workers")[1]["type"] == "supervisor"
    assert rt.count_children("root/workers") == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
    assert rt.count_children() == {"specs": 3, "active": 3, "supervisors": 2, "workers": 1}
    assert sorted(a["id"] for a in rt.list_agents()) == ["p1", "solo", "w1", "w2"]
    agent = rt.get_agent("w2")
    assert agent["supervisor"] == "root/workers" and agent["kind"] == "worker"

    rt.stop("w2")
    assert child_ids(rt, "root/workers") == ["w1", "inner"]
    assert rt.count_children("root/workers")["workers"] == 1
    with pytest.raises(UnknownAgentError):
        rt.get_agent("w2")
    with pytest.raises(UnknownAgentError):
        rt.stop("w2")


def test_introspection_never_blocks_on_a_busy_agent(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate), "busy")
    rt.send(agent, "block")
    assert gate.entered.wait(WAIT_S)
    started = time.monotonic()
    assert rt.get_agent(agent)["state"] == "busy"
    assert [c["state"] for c in rt.which_children() if c["id"] == agent] == ["busy"]
    assert rt.tree()["children"][0]["state"] == "busy"
    assert time.monotonic() - started < 1.0


def test_manual_restart_is_not_counted_against_intensity(clock: FakeClock) -> None:
    root = SupervisorSpec("root", intensity=0)
    with running(clock=clock, root=root, kinds={"worker": Worker}) as rt:
        agent = rt.spawn("worker")
        first = token(rt, agent)
        rt.restart(agent)
        rt.restart(agent)
        assert token(rt, agent) != first
        assert rt.get_agent(agent)["restart_count"] == 2
        assert [e.event_type for e in rt.history(agent_id=agent)][-1] == "restarted"
        assert rt.fatal_error is None and not rt.closed


def test_stats_count_agents_and_restarts(rt: Runtime) -> None:
    a = rt.spawn("worker")
    rt.spawn("worker")
    crash(rt, a)
    stats: dict[str, Any] = rt.stats()
    assert stats["agents"] == 2 and stats["restarts"] == 1 and stats["node_id"] == rt.node_id


def test_agent_subclass_can_be_spawned_by_class_or_registered_name(rt: Runtime) -> None:
    class Named(Agent):
        kind = "named"

        @command("hi")
        def hi(self) -> str:
            return "hi"

    by_class = rt.spawn(Named)
    assert by_class.startswith("named-")
    rt.register("alias", Named)
    by_name = rt.spawn("alias", "n2")
    assert rt.ask(by_class, "hi", timeout=WAIT_S) == rt.ask(by_name, "hi", timeout=WAIT_S) == "hi"
    with pytest.raises(SpecError):
        rt.register("bad name!", Named)
