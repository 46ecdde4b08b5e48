"""Supervision: specs, strategies, restart intensity, backoff and events.

Imported as ``mistersmith.supervisors``.
"""

from mistersmith.supervisors._child import Child
from mistersmith.supervisors._events import (
    EVENT_TYPES,
    EventBus,
    EventSink,
    MemorySink,
    Subscription,
    SupervisionEvent,
)
from mistersmith.supervisors._intensity import IntensityWindow
from mistersmith.supervisors._spec import DEFAULTS, Backoff, ChildSpec, Restart, Strategy, SupervisorSpec, tolerant_root
from mistersmith.supervisors._supervisor import Supervisor
from mistersmith.supervisors._system import System

__all__ = [
    "DEFAULTS",
    "EVENT_TYPES",
    "Backoff",
    "Child",
    "ChildSpec",
    "EventBus",
    "EventSink",
    "IntensityWindow",
    "MemorySink",
    "Restart",
    "Strategy",
    "Subscription",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorSpec",
    "System",
    "tolerant_root",
]
