"""Supervision history: the fold that rebuilds the tree from events, and recovery planning.

Supervision logic, not storage: pure modules that read events and registry
records from any store (the PostgreSQL journal today) and import none.

- ``projection.py``: ``Projection`` folds events into one ``AgentRecord`` per
  child slot (``record.py``); ``TreeSnapshot`` (``snapshot.py``) is the tree
  it describes at one point.
- ``plan.py``: ``plan_recovery`` decides, from a node's records, which slots a
  restart brings back (``RecoveryPlan``); the Runtime carries it out
  (``mistersmith.recovery``).
"""

from mistersmith.history.plan import RecoveryPlan, plan_recovery
from mistersmith.history.projection import EventLike, Projection
from mistersmith.history.record import AgentRecord, RecordKey
from mistersmith.history.snapshot import TreeSnapshot

__all__ = ["AgentRecord", "EventLike", "Projection", "RecordKey", "RecoveryPlan", "TreeSnapshot", "plan_recovery"]
