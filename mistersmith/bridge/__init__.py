"""The NATS edge (nats-py): subjects, command routing, status events, tasks, the service
directory (``services``) and shared discoveries (``ingest``).

``Bridge`` makes one Runtime's agents reachable over one NATS connection;
``connect`` makes that connection (auth, TLS, pings, reconnect backoff,
counters); ``AgentClient`` commands agents from any asyncio program.
Everything here runs on the node's event-loop thread.
"""

from . import subjects
from .bridge import Bridge, BridgeOptions
from .client import AgentClient
from .connection import ConnectionStats, ConnectOptions, connect, reconnect_delay_s
from .errors import JetStreamUnavailableError, NatsUnavailableError, NoTaskAgentError, UnservedKindError
from .task_agents import AgentPool, HostedAgents, TaskAgents, serve_pools
from .task_status import TaskTracker
from .tasks import TaskOptions, TaskQueue
from .trace import new_traceparent

__all__ = [
    "AgentClient",
    "AgentPool",
    "Bridge",
    "BridgeOptions",
    "ConnectOptions",
    "ConnectionStats",
    "HostedAgents",
    "JetStreamUnavailableError",
    "NatsUnavailableError",
    "NoTaskAgentError",
    "TaskAgents",
    "TaskOptions",
    "TaskQueue",
    "TaskTracker",
    "UnservedKindError",
    "connect",
    "new_traceparent",
    "reconnect_delay_s",
    "serve_pools",
    "subjects",
]
