"""Recovery planning (pure): which slots a restarted node brings back, from registry records alone."""

from __future__ import annotations

from datetime import UTC, datetime

from mistersmith.history import AgentRecord, plan_recovery


def test_plan_leaves_children_of_unrecovered_supervisors() -> None:
    def record(sup: str, agent: str, kind: str, restart: str, seq: int) -> AgentRecord:
        return AgentRecord("n1", sup, agent, kind, restart, {}, "running", "running", 0, None, "started",
                           seq, seq, datetime.now(UTC))

    plan = plan_recovery([
        record("root", "tmp_sup", "supervisor", "temporary", 2),
        record("root/tmp_sup", "a1", "echo", "permanent", 3),
        record("root", "keep", "echo", "permanent", 4),
        record("root/never_journaled", "orphan", "echo", "permanent", 5),
    ])
    assert [r.agent_id for r in plan.respawn] == ["keep"]
    assert {r.agent_id: why for r, why in plan.leave} == {
        "tmp_sup": "not restarted (restart=temporary) after the node restarted",
        "a1": "its supervisor is not recovered",
        "orphan": "its supervisor is not in the registry",
    }
