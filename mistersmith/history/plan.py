"""Recovery planning: which child slots a restarted node brings back. Pure, no I/O.

Input: the node's registry records (the projection of its history, see
``projection.py``), read once the store holds every event the node emitted.
Each child slot is decided by OTP's rules, reading the node's death as the
exit of everything it ran:

- ``desired_state`` ``stopped`` (stopped on purpose, or not restarted): left alone;
- ``temporary``: never restarted;
- ``transient``: restarted only if it did not end normally, that is unless
  the node shut it down cleanly (state ``stopped``); after a crash of the node
  (``kill -9``), or a stop to run elsewhere (state ``moving``: a handoff, a
  lost lease), it is restarted;
- ``permanent``: restarted;
- a child whose supervisor is not recovered is not either; one that runs
  already (a static child of the new tree, or spawned before recovery) is
  left as it is.

Supervisors come back before their children, and siblings in their original
start order. This module only plans (``plan_recovery``); the Runtime carries
the plan out (``Runtime.recover(plan)``, see ``mistersmith.recovery``),
spawning and emitting: ``recovered`` after each respawned child's own
``started``, ``recovery_failed`` for each slot that could not come back (a
kind no longer registered: the registry keeps it wanted, see
``projection.py``), and ``stopped`` with reason ``not restarted
(restart=...)`` for each slot not restarted, so the history tells where every
agent went and the registry forgets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .projection import MOVING
from .record import AgentRecord

__all__ = ["RecoveryPlan", "plan_recovery"]


@dataclass(frozen=True)
class RecoveryPlan:
    """What to respawn (parents first) and what to leave, with why."""

    respawn: tuple[AgentRecord, ...]
    leave: tuple[tuple[AgentRecord, str], ...]


def _why_not(record: AgentRecord) -> str | None:
    if record.desired_state != "running":
        return "stopped on purpose"
    if record.restart == "temporary":
        return "not restarted (restart=temporary) after the node restarted"
    if record.restart == "transient" and record.state == "stopped" and not (record.reason or "").startswith(MOVING):
        return "not restarted (restart=transient, it was shut down normally) after the node restarted"
    if record.is_supervisor and record.spec.get("strategy") == "simple_one_for_one":
        return "not restarted: a simple_one_for_one supervisor's template is not journaled"
    return None


def plan_recovery(records: Iterable[AgentRecord]) -> RecoveryPlan:
    """Decide, purely from registry records, what comes back (see the module docstring)."""
    ordered = sorted(
        (r for r in records if r.supervisor),  # the root is the new runtime's own
        key=lambda r: (r.path.count("/"), r.started_seq),
    )
    respawn: list[AgentRecord] = []
    leave: list[tuple[AgentRecord, str]] = []
    gone: set[str] = set()
    known = {r.path for r in ordered} | {r.supervisor for r in ordered if r.supervisor.count("/") == 0}
    for record in ordered:
        why = _why_not(record)
        if why is None and record.supervisor not in known:
            why = "its supervisor is not in the registry"
        if why is None and any(record.supervisor == g or record.supervisor.startswith(g + "/") for g in gone):
            why = "its supervisor is not recovered"
        if why is None:
            respawn.append(record)
        else:
            leave.append((record, why))
            if record.is_supervisor:
                gone.add(record.path)
    return RecoveryPlan(tuple(respawn), tuple(leave))
