"""Recovery: a node restarted with the same ``node_id`` gets its agents back.

Input: the node's rows in the ``agents`` registry (the projection of its
journal, see ``projection.py``), read after the spool's backlog is shipped.
Each child slot is decided by OTP's rules, reading the node's death as the
exit of everything it ran:

- ``desired_state`` ``stopped`` (stopped on purpose, or not restarted): left alone;
- ``temporary``: never restarted;
- ``transient``: restarted only if it did not end normally, that is unless
  the node shut it down cleanly (state ``stopped``); after a crash of the node
  (``kill -9``) it is restarted;
- ``permanent``: restarted;
- a child whose supervisor is not recovered is not either; one that runs
  already (a static child of the new tree, or spawned before recovery) is
  left as it is.

Supervisors come back before their children, and siblings in their original
start order. This module only plans (pure: ``plan_recovery``); the Runtime
carries the plan out (``Runtime.recover(plan)``, see ``mistersmith.recovery``),
spawning and emitting: ``recovered`` after each respawned child's own
``started``, ``recovery_failed`` for each slot that could not come back (a
kind no longer registered: the registry keeps it wanted, see
``projection.py``), and ``stopped`` with reason ``not restarted
(restart=...)`` for each slot not restarted, so the journal tells where every
agent went and the registry forgets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from mistersmith.recovery import RecoveryPlan, RecoveryReport

from .projection import AgentRecord

__all__ = ["RecoveryPlan", "RecoveryReport", "RecoveryTarget", "plan_recovery", "recover"]


class RecoveryTarget(Protocol):
    """What recovery needs of a ``Runtime`` (the journal does not import the node)."""

    node_id: str

    def recover(self, plan: RecoveryPlan) -> RecoveryReport: ...


def _why_not(record: AgentRecord) -> str | None:
    if record.desired_state != "running":
        return "stopped on purpose"
    if record.restart == "temporary":
        return "not restarted (restart=temporary) after the node restarted"
    if record.restart == "transient" and record.state == "stopped":
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


def recover(runtime: RecoveryTarget, records: Iterable[AgentRecord]) -> RecoveryReport:
    """Plan from ``records`` and have ``runtime`` carry the plan out; blocking (call from a plain thread)."""
    return runtime.recover(plan_recovery(records))
