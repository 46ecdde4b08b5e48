"""``restart_chain``: the failure, the restarts in the intensity window, the escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mistersmith.history.chain import restart_chain

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _e(seq: int, event_type: str, at_s: float, agent_id: str | None = "a1", **more: Any) -> dict[str, Any]:
    return {"seq": seq, "event_type": event_type, "occurred_at": (T0 + timedelta(seconds=at_s)).isoformat(),
            "agent_id": agent_id, "supervisor": "root/workers", "reason": more.pop("reason", None), **more}


def test_the_chain_counts_only_restarts_inside_the_window_and_finds_the_escalation() -> None:
    agent = [_e(1, "started", 0), _e(2, "failed", 1), _e(3, "restarted", 1.1),  # outside the 5 s window
             _e(4, "failed", 10, reason="boom", trace_id="abc"), _e(5, "restarted", 10.1),
             _e(6, "failed", 12, reason="boom again"), _e(7, "restarted", 12.1)]
    escalations = [_e(8, "intensity_exceeded", 12.2, agent_id=None), _e(9, "escalated", 12.3, agent_id=None)]
    chain = restart_chain(agent[6], agent, escalations, intensity=1, period_s=5.0)
    assert chain["failure"]["seq"] == 6 and chain["failure"]["trace_id"] is None
    assert [e["seq"] for e in chain["previous_restarts"]] == [5]
    assert chain["window"] == {"intensity": 1, "period_s": 5.0, "used": 2, "exceeded": True}
    assert chain["escalation"]["event_type"] == "intensity_exceeded"


def test_a_failure_keeps_its_trace_id_and_an_unknown_window_lists_every_restart() -> None:
    agent = [_e(1, "failed", 0, trace_id="t-1"), _e(2, "restarted", 0.1), _e(3, "failed", 100, trace_id="t-2"),
             _e(4, "restart_scheduled", 100.1)]
    chain = restart_chain(agent[3], agent, [], intensity=None, period_s=None)
    assert chain["failure"]["trace_id"] == "t-2"
    assert [e["seq"] for e in chain["previous_restarts"]] == [2]
    assert chain["window"]["used"] == 2 and chain["window"]["exceeded"] is False
    assert chain["escalation"] is None
