"""``restart_chain``: why did this restart happen? Pure, no I/O.

For one selected supervision event (a ``restarted``, ``restart_scheduled``,
``failed``, ``escalated``...), the chain that led to it, from events as
dicts (``SupervisionEvent.to_dict()``, with ``trace_id`` when events carry it):

- ``failure``: the agent's last ``failed`` event at or before it (its reason
  and, when the event has one, its ``trace_id``);
- ``previous_restarts``: the agent's ``restarted`` events in the restart
  intensity window before it (``period_s`` seconds, OTP's sliding window);
- ``window``: the supervisor's ``intensity`` and ``period_s``, and how many
  restarts the window holds with this one (``used``);
- ``escalation``: the first ``intensity_exceeded`` or ``escalated`` event of
  the agent's supervisor at or after it, if the window gave out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = ["ESCALATIONS", "restart_chain"]

ESCALATIONS = ("intensity_exceeded", "escalated")
_RESTARTS = ("restarted", "restart_scheduled")


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]))


def restart_chain(
    selected: Mapping[str, Any],
    agent_events: Sequence[Mapping[str, Any]],
    supervisor_events: Sequence[Mapping[str, Any]],
    *,
    intensity: int | None,
    period_s: float | None,
) -> dict[str, Any]:
    """The chain for ``selected``. ``agent_events``: that agent's events around it (any order);
    ``supervisor_events``: its supervisor's escalations around it. ``intensity``/``period_s``:
    the supervisor's window (``None`` if unknown: every earlier restart is listed)."""
    seq = int(selected["seq"])
    when = _at(selected)
    earlier = sorted((e for e in agent_events if int(e["seq"]) <= seq), key=lambda e: int(e["seq"]))
    failures = [e for e in earlier if e["event_type"] == "failed"]
    failure = dict(failures[-1]) if failures else None
    if failure is not None:
        failure.setdefault("trace_id", None)
    start = when - timedelta(seconds=period_s) if period_s is not None else None
    previous = [dict(e) for e in earlier
                if e["event_type"] == "restarted" and int(e["seq"]) < seq and (start is None or _at(e) >= start)]
    counted = len(previous) + (1 if selected["event_type"] in _RESTARTS else 0)
    escalations = sorted((e for e in supervisor_events
                          if e["event_type"] in ESCALATIONS and int(e["seq"]) >= seq), key=lambda e: int(e["seq"]))
    return {
        "event": dict(selected),
        "failure": failure,
        "previous_restarts": previous,
        "window": {"intensity": intensity, "period_s": period_s, "used": counted,
                   "exceeded": intensity is not None and counted > intensity},
        "escalation": dict(escalations[0]) if escalations else None,
    }
