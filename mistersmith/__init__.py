"""MisterSmith: an actor-model agent supervision runtime.

Agents are pykka actors in supervision trees with Erlang/OTP's semantics.
Embed a ``Runtime`` in a sync or asyncio program::

    from mistersmith import Runtime

    with Runtime() as rt:
        agent = rt.spawn("echo")
        rt.ask(agent, "echo", {"hello": "world"}, timeout=5)
"""

import logging as _logging

from mistersmith.actors import Agent, AgentState, EchoAgent, ProcessAgent, ProcessKind, Progress, command
from mistersmith.clock import FakeClock, MonotonicClock
from mistersmith.errors import (
    AgentExistsError,
    AgentFailedError,
    BlockingCallError,
    BreakerOpenError,
    CommandCancelledError,
    CommandError,
    CommandTimeoutError,
    FatalError,
    InvalidPayloadError,
    MailboxFullError,
    MisterSmithError,
    PausedError,
    PoolFullError,
    RestartingError,
    RuntimeClosedError,
    SpecError,
    StartError,
    UnknownAgentError,
    UnknownCommandError,
)
from mistersmith.runtime import Runtime
from mistersmith.supervisors import (
    EVENT_TYPES,
    Backoff,
    ChildSpec,
    MemorySink,
    SupervisionEvent,
    SupervisorSpec,
)

__version__ = "0.1.0"

# A library leaves output to its application: without this, Python's last-resort
# handler would print every handled crash's traceback to stderr. `mistersmith
# serve` (and any program calling logging.basicConfig) sees the records as usual.
_logging.getLogger("mistersmith").addHandler(_logging.NullHandler())

__all__ = [
    "EVENT_TYPES",
    "Agent",
    "AgentExistsError",
    "AgentFailedError",
    "AgentState",
    "Backoff",
    "BlockingCallError",
    "BreakerOpenError",
    "ChildSpec",
    "CommandCancelledError",
    "CommandError",
    "CommandTimeoutError",
    "EchoAgent",
    "FakeClock",
    "FatalError",
    "InvalidPayloadError",
    "MailboxFullError",
    "MemorySink",
    "MisterSmithError",
    "MonotonicClock",
    "PausedError",
    "PoolFullError",
    "ProcessAgent",
    "ProcessKind",
    "Progress",
    "RestartingError",
    "Runtime",
    "RuntimeClosedError",
    "SpecError",
    "StartError",
    "SupervisionEvent",
    "SupervisorSpec",
    "UnknownAgentError",
    "UnknownCommandError",
    "command",
]
