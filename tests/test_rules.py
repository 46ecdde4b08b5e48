"""The supervision rules as data: each restart type and each strategy decides in one place."""

from __future__ import annotations

from typing import Any

import pytest

from _helpers import WAIT_S, end_incarnation
from mistersmith import FakeClock, Runtime
from mistersmith.actors import Exit
from mistersmith.supervisors import (
    RESTARTS,
    STRATEGIES,
    Backoff,
    Child,
    ChildSpec,
    ChildStatus,
    Supervisor,
    SupervisorSpec,
)
from mistersmith.supervisors._restarts import restart_rule
from mistersmith.supervisors._strategies import strategy_rule

EXITS = {"normal": Exit.normal(), "shutdown": Exit.shutdown("asked"), "crash": Exit.crash("boom")}


@pytest.mark.parametrize(
    ("restart", "restarted_after", "removed"),
    [
        ("permanent", {"normal", "shutdown", "crash"}, False),
        ("transient", {"crash"}, False),
        ("temporary", set(), True),
    ],
)
def test_each_restart_type_follows_otp(restart: str, restarted_after: set[str], removed: bool) -> None:
    rule = restart_rule(restart)
    assert {name for name, exit_ in EXITS.items() if rule.should_restart(exit_)} == restarted_after
    assert rule.removed is removed


def test_there_is_one_rule_per_restart_type_and_per_strategy() -> None:
    assert RESTARTS == ("permanent", "transient", "temporary")
    assert STRATEGIES == ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
    for restart in RESTARTS:
        restart_rule(restart)
    for strategy in STRATEGIES:
        strategy_rule(strategy)


def _children(n: int) -> list[Child]:
    return [Child(ChildSpec(f"c{i}", "echo"), None, dynamic=False) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "targets", "from_template"),
    [
        ("one_for_one", [2], False),
        ("one_for_all", [0, 1, 2, 3], False),
        ("rest_for_one", [2, 3], False),
        ("simple_one_for_one", [2], True),
    ],
)
def test_each_strategy_targets_whom_otp_restarts(strategy: str, targets: list[int], from_template: bool) -> None:
    children = _children(4)
    rule = strategy_rule(strategy)
    assert rule.targets(children, children[2]) == [children[i] for i in targets]
    assert rule.from_template is from_template


def _status(rt: Runtime, agent_id: str) -> ChildStatus:
    return rt.system.agents[agent_id].status


def test_a_childs_status_follows_its_life(clock: FakeClock) -> None:
    rt = Runtime(clock=clock, root=SupervisorSpec("root", intensity=10, backoff=Backoff(min_s=1.0, jitter=0.0)))
    try:
        agent = rt.spawn("echo", "a")
        assert _status(rt, agent) is ChildStatus.RUNNING
        end_incarnation(rt, agent, lambda: _fail(rt, agent))
        assert _status(rt, agent) is ChildStatus.BACKING_OFF
        info: dict[str, Any] = rt.get_agent(agent)
        assert info["state"] == "restarting" and info["restart_at"] == pytest.approx(clock.now() + 1.0)
        temporary = rt.spawn("echo", "t", restart="temporary")
        child = rt.system.agents[temporary]
        end_incarnation(rt, temporary, lambda: _fail(rt, temporary))
        assert child.status is ChildStatus.FAILED and temporary not in rt.system.agents
    finally:
        rt.close()


def _fail(rt: Runtime, agent_id: str) -> None:
    with pytest.raises(Exception):
        rt.ask(agent_id, "fail", timeout=WAIT_S)


def test_the_root_starts_through_its_public_entry(clock: FakeClock) -> None:
    rt = Runtime(clock=clock)
    try:
        root = rt.system.supervisor("root")
        assert isinstance(root, Supervisor) and root.path == "root"
        assert rt.tree()["children"] == []
    finally:
        rt.close()
