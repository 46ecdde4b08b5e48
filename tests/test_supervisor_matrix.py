"""{normal, shutdown, crash} x {permanent, transient, temporary} x every strategy.

As in OTP's supervisor_SUITE: after one child exits, assert exactly which
children were restarted (a new incarnation, a ``restarted`` event, a higher
restart count), which kept their incarnation, and which were removed.

OTP's rules: a permanent child is always restarted; a transient child only
after an abnormal exit (not ``normal``, not ``shutdown``); a temporary child
never, and its spec is then deleted. ``one_for_one`` restarts the child,
``one_for_all`` every child, ``rest_for_one`` the child and those started
after it; ``simple_one_for_one`` behaves as ``one_for_one`` over dynamic
children, which are deleted whenever they are not restarted.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mistersmith import AgentFailedError, ChildSpec, FakeClock, Runtime, SupervisorSpec, UnknownAgentError

from _helpers import WAIT_S, Worker, child_ids, end_incarnation, running, token

EXITS = ("normal", "shutdown", "crash")
RESTARTS = ("permanent", "transient", "temporary")
STATIC = ("one_for_one", "one_for_all", "rest_for_one")
PATH = "root/sup"


def restarts(restart: str, how: str) -> bool:
    return restart == "permanent" or (restart == "transient" and how == "crash")


def trigger(rt: Runtime, agent_id: str, how: str) -> None:
    if how == "crash":
        with pytest.raises(AgentFailedError):
            rt.ask(agent_id, "exit", {"how": how}, timeout=WAIT_S)
    else:
        assert rt.ask(agent_id, "exit", {"how": how}, timeout=WAIT_S) == {"exiting": how}


def restarted_ids(rt: Runtime) -> list[str]:
    return [e.agent_id or "" for e in rt.history(event_types=["restarted"]) if e.supervisor == PATH]


@pytest.fixture
def rt(clock: FakeClock) -> Any:
    with running(clock=clock, kinds={"worker": Worker}) as runtime:
        yield runtime


@pytest.mark.parametrize(
    ("strategy", "restart", "how"), list(itertools.product(STATIC, RESTARTS, EXITS))
)
def test_static_children(rt: Runtime, strategy: str, restart: str, how: str) -> None:
    """Children a, b, c (a and c permanent); b, of the restart type under test, exits."""
    spec = SupervisorSpec(
        "sup",
        strategy=strategy,  # type: ignore[arg-type]
        intensity=10,
        children=(
            ChildSpec("a", "worker"),
            ChildSpec("b", "worker", restart=restart),  # type: ignore[arg-type]
            ChildSpec("c", "worker"),
        ),
    )
    assert rt.add_supervisor(spec) == PATH
    before = {cid: token(rt, cid) for cid in "abc"}

    end_incarnation(rt, "b", lambda: trigger(rt, "b", how))

    if restarts(restart, how):
        expected = {"one_for_one": ["b"], "one_for_all": ["a", "b", "c"], "rest_for_one": ["b", "c"]}[strategy]
    else:
        expected = []
    # Restarted in start order; nothing else restarted.
    assert restarted_ids(rt) == expected
    for cid in "abc":
        if cid == "b" and not restarts(restart, how):
            continue
        changed = token(rt, cid) != before[cid]
        assert changed == (cid in expected), f"{cid}: restarted={changed}, expected {cid in expected}"
        assert rt.get_agent(cid)["restart_count"] == (1 if cid in expected else 0)
        assert rt.get_agent(cid)["state"] == "idle"

    if restarts(restart, how):
        assert child_ids(rt, PATH) == ["a", "b", "c"]
        assert rt.count_children(PATH) == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
    elif restart == "temporary":
        # OTP deletes a temporary child's spec when it terminates.
        assert child_ids(rt, PATH) == ["a", "c"]
        assert rt.count_children(PATH) == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
        with pytest.raises(UnknownAgentError):
            rt.get_agent("b")
        with pytest.raises(UnknownAgentError):
            rt.ask("b", "whoami", timeout=WAIT_S)
    else:
        # A transient child that ended normally keeps its spec, not running.
        assert child_ids(rt, PATH) == ["a", "b", "c"]
        assert rt.count_children(PATH) == {"specs": 3, "active": 2, "supervisors": 0, "workers": 3}
        assert rt.get_agent("b")["state"] == "stopped"
        with pytest.raises(UnknownAgentError):
            rt.ask("b", "whoami", timeout=WAIT_S)


@pytest.mark.parametrize(("restart", "how"), list(itertools.product(RESTARTS, EXITS)))
def test_simple_one_for_one_children(rt: Runtime, restart: str, how: str) -> None:
    """Dynamic children d1, d2, d3 of one template; d2 exits."""
    spec = SupervisorSpec(
        "sup",
        strategy="simple_one_for_one",
        intensity=10,
        template=ChildSpec(None, "worker", restart=restart),  # type: ignore[arg-type]
    )
    rt.add_supervisor(spec)
    ids = [rt.spawn(None, f"d{i}", supervisor=PATH) for i in (1, 2, 3)]
    assert ids == ["d1", "d2", "d3"]
    assert rt.get_agent("d2")["restart"] == restart
    before = {cid: token(rt, cid) for cid in ids}

    end_incarnation(rt, "d2", lambda: trigger(rt, "d2", how))

    assert token(rt, "d1") == before["d1"]
    assert token(rt, "d3") == before["d3"]
    if restarts(restart, how):
        assert restarted_ids(rt) == ["d2"]
        assert token(rt, "d2") != before["d2"]
        assert rt.get_agent("d2")["restart_count"] == 1
        assert child_ids(rt, PATH) == ["d1", "d2", "d3"]
    else:
        # OTP: a dynamic child that is not restarted is deleted, whatever its type.
        assert restarted_ids(rt) == []
        assert child_ids(rt, PATH) == ["d1", "d3"]
        with pytest.raises(UnknownAgentError):
            rt.get_agent("d2")
    counts = rt.count_children(PATH)
    # OTP: simple_one_for_one counts its one template as its one spec.
    assert counts["specs"] == 1
    assert counts["active"] == counts["workers"] == (3 if restarts(restart, how) else 2)


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
@pytest.mark.parametrize("sibling", ["transient", "temporary"])
def test_siblings_taken_down_by_a_crash(rt: Runtime, strategy: str, sibling: str) -> None:
    """OTP: siblings stopped by the strategy come back, except temporary ones, which are deleted."""
    spec = SupervisorSpec(
        "sup",
        strategy=strategy,  # type: ignore[arg-type]
        intensity=10,
        children=(ChildSpec("a", "worker"), ChildSpec("b", "worker"), ChildSpec("c", "worker", restart=sibling)),  # type: ignore[arg-type]
    )
    rt.add_supervisor(spec)
    before = token(rt, "c")
    end_incarnation(rt, "b", lambda: trigger(rt, "b", "crash"))
    stopped = [e.agent_id for e in rt.history(event_types=["stopped"]) if e.supervisor == PATH]
    assert "c" in stopped
    if sibling == "temporary":
        assert "c" not in child_ids(rt, PATH)
        with pytest.raises(UnknownAgentError):
            rt.get_agent("c")
    else:
        assert token(rt, "c") != before
        assert rt.get_agent("c")["restart_count"] == 1


def test_one_for_all_stops_in_reverse_and_restarts_in_order(rt: Runtime) -> None:
    spec = SupervisorSpec(
        "sup",
        strategy="one_for_all",
        intensity=10,
        children=tuple(ChildSpec(cid, "worker") for cid in ("a", "b", "c", "d")),
    )
    rt.add_supervisor(spec)
    end_incarnation(rt, "b", lambda: trigger(rt, "b", "crash"))
    events = [e for e in rt.history() if e.supervisor == PATH and e.event_type in ("stopped", "restarted")]
    assert [(e.event_type, e.agent_id) for e in events] == [
        ("stopped", "d"),
        ("stopped", "c"),
        ("stopped", "a"),
        ("restarted", "a"),
        ("restarted", "b"),
        ("restarted", "c"),
        ("restarted", "d"),
    ]
    # One restart of the group counts once against the intensity.
    assert rt.stats()["restarts"] == 1


def test_rest_for_one_restarts_only_later_children(rt: Runtime) -> None:
    spec = SupervisorSpec(
        "sup",
        strategy="rest_for_one",
        intensity=10,
        children=tuple(ChildSpec(cid, "worker") for cid in ("a", "b", "c", "d")),
    )
    rt.add_supervisor(spec)
    end_incarnation(rt, "b", lambda: trigger(rt, "b", "crash"))
    events = [e for e in rt.history() if e.supervisor == PATH and e.event_type in ("stopped", "restarted")]
    assert [(e.event_type, e.agent_id) for e in events] == [
        ("stopped", "d"),
        ("stopped", "c"),
        ("restarted", "b"),
        ("restarted", "c"),
        ("restarted", "d"),
    ]


def test_transient_child_that_stopped_can_be_restarted_by_hand(rt: Runtime) -> None:
    """OTP's restart_child on a terminated child that kept its spec."""
    rt.add_supervisor(SupervisorSpec("sup", children=(ChildSpec("t", "worker", restart="transient"),)))
    end_incarnation(rt, "t", lambda: trigger(rt, "t", "normal"))
    assert rt.get_agent("t")["state"] == "stopped"
    rt.restart("t")
    assert rt.ask("t", "whoami", timeout=WAIT_S)["restart_count"] == 1
    assert rt.get_agent("t")["state"] == "idle"
