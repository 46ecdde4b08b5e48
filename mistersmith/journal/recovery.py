"""Recovery from the journal: a node restarted with the same ``node_id`` gets its agents back.

The journal's part is to read: ``Journal.recover`` ships the spool's backlog,
so the ``agents`` registry is current, and reads the node's rows. Deciding
what comes back is supervision logic (``mistersmith.history.plan``, pure:
``plan_recovery``), and carrying it out is the Runtime's
(``Runtime.recover(plan)``, see ``mistersmith.recovery``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from mistersmith.history import AgentRecord, RecoveryPlan, plan_recovery
from mistersmith.recovery import RecoveryReport

__all__ = ["RecoveryPlan", "RecoveryReport", "RecoveryTarget", "plan_recovery", "recover"]


class RecoveryTarget(Protocol):
    """What recovery needs of a ``Runtime`` (the journal does not import the node)."""

    node_id: str

    def recover(self, plan: RecoveryPlan) -> RecoveryReport: ...


def recover(runtime: RecoveryTarget, records: Iterable[AgentRecord]) -> RecoveryReport:
    """Plan from ``records`` and have ``runtime`` carry the plan out; blocking (call from a plain thread)."""
    return runtime.recover(plan_recovery(records))
