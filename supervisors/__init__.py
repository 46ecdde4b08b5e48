"""Supervision: specs, strategies, restart intensity, backoff and events.

Imported as ``mistersmith.supervisors``.
"""

from mistersmith.supervisors._child import Child, ChildStatus
from mistersmith.supervisors._events import (
    EVENT_TYPES,
    EventBus,
    EventSink,
    MemorySink,
    Subscription,
    SupervisionEvent,
)
from mistersmith.supervisors._intensity import IntensityWindow
from mistersmith.supervisors._directory import Owners
from mistersmith.supervisors._messages import DropChildren, Request, RestartChild, StartChild, TerminateChild
from mistersmith.supervisors._spec import (
    DEFAULTS,
    RESTARTS,
    STRATEGIES,
    Backoff,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    check_id,
    tolerant_root,
)
from mistersmith.supervisors._supervisor import Supervisor
from mistersmith.supervisors._system import System

__all__ = [
    "DEFAULTS",
    "EVENT_TYPES",
    "RESTARTS",
    "STRATEGIES",
    "Backoff",
    "Child",
    "DropChildren",
    "ChildSpec",
    "ChildStatus",
    "EventBus",
    "EventSink",
    "IntensityWindow",
    "MemorySink",
    "Owners",
    "Request",
    "Restart",
    "RestartChild",
    "StartChild",
    "Strategy",
    "Subscription",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorSpec",
    "System",
    "TerminateChild",
    "check_id",
    "tolerant_root",
]
