"""NATS subjects: building, parsing and validating them. Pure code.

The subject space (one token is 1-128 letters, digits, ``_`` or ``-``, as agent
ids, node ids, kinds and command names are):

- ``agents.{id}.commands.{cmd}``: request/reply with a reply subject, a tell without;
- ``agents.{id}.control.{action}``: ``stop``, ``restart``, ``get`` of one agent,
  answered by the node that hosts it (what ``system.control.*`` forwards to);
- ``agents.{id}.status.{type}``: supervision events and ``heartbeat``;
- ``system.control.{action}``: the control plane (request/reply);
- ``system.node.{node}.{action}``: one node's control plane (a ``spawn`` or
  ``ping`` that names a node is forwarded here);
- ``system.nodes.{hello,here,bye,list,tree}``: node membership and the scatters of
  ``list`` and ``tree``;
- ``system.events.{node}.{type}``: supervision events of supervisors (no agent id);
- ``agents.discovery.announce`` and ``agents.discovery.query``;
- ``discoveries.{agent_id}.{type}``: shared knowledge;
- ``tasks.{kind}.queue.{priority}``, ``tasks.{kind}.dead``,
  ``tasks.{task_id}.progress``, ``tasks.{task_id}.result``.
"""

from __future__ import annotations

import re

from mistersmith.errors import SpecError

__all__ = [
    "AGENT_ACTIONS",
    "ANNOUNCE",
    "CONTROL_ACTIONS",
    "NODE_ACTIONS",
    "PRIORITIES",
    "QUERY",
    "SPAWN_QUEUE",
    "agent_control",
    "agent_control_wildcard",
    "check_token",
    "command",
    "command_wildcard",
    "control",
    "is_token",
    "node_control",
    "nodes",
    "parse_command",
    "parse_control",
    "status",
    "supervisor_events",
    "task_dead",
    "task_progress",
    "task_queue",
    "task_result",
]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")

CONTROL_ACTIONS: tuple[str, ...] = ("spawn", "stop", "restart", "list", "get", "ping", "shutdown", "tree", "kinds")
AGENT_ACTIONS: tuple[str, ...] = ("stop", "restart", "get")
NODE_ACTIONS: tuple[str, ...] = ("spawn", "ping", "shutdown", "kinds")
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")

ANNOUNCE = "agents.discovery.announce"
QUERY = "agents.discovery.query"
SPAWN_QUEUE = "mistersmith.control"
"""The queue group of ``system.control.*``: exactly one node answers each request."""


def is_token(value: object) -> bool:
    """True if ``value`` can be one subject token (no dots, no wildcards, no spaces)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def check_token(value: object, key: str) -> str:
    """``value`` if it is a valid token, else ``SpecError`` naming ``key``."""
    if not is_token(value):
        raise SpecError(None, key, value, "use 1-128 letters, digits, '_' or '-' (a NATS subject token)")
    assert isinstance(value, str)
    return value


def command(agent_id: str, cmd: str) -> str:
    return f"agents.{check_token(agent_id, 'agent_id')}.commands.{check_token(cmd, 'command')}"


def command_wildcard(agent_id: str) -> str:
    """What the hosting node subscribes to for one agent's commands."""
    return f"agents.{check_token(agent_id, 'agent_id')}.commands.*"


def agent_control(agent_id: str, action: str) -> str:
    if action not in AGENT_ACTIONS:
        raise SpecError(None, "action", action, f"use one of: {', '.join(AGENT_ACTIONS)}")
    return f"agents.{check_token(agent_id, 'agent_id')}.control.{action}"


def agent_control_wildcard(agent_id: str) -> str:
    return f"agents.{check_token(agent_id, 'agent_id')}.control.*"


def status(agent_id: str, event_type: str) -> str:
    return f"agents.{check_token(agent_id, 'agent_id')}.status.{check_token(event_type, 'event_type')}"


def supervisor_events(node_id: str, event_type: str) -> str:
    return f"system.events.{check_token(node_id, 'node_id')}.{check_token(event_type, 'event_type')}"


def control(action: str) -> str:
    if action not in CONTROL_ACTIONS:
        raise SpecError(None, "action", action, f"use one of: {', '.join(CONTROL_ACTIONS)}")
    return f"system.control.{action}"


def node_control(node_id: str, action: str) -> str:
    if action not in NODE_ACTIONS:
        raise SpecError(None, "action", action, f"use one of: {', '.join(NODE_ACTIONS)}")
    return f"system.node.{check_token(node_id, 'node_id')}.{action}"


def nodes(what: str) -> str:
    """``system.nodes.{hello,here,bye,list,tree}``."""
    if what not in ("hello", "here", "bye", "list", "tree"):
        raise SpecError(None, "what", what, "use hello, here, bye, list or tree")
    return f"system.nodes.{what}"


def parse_command(subject: str) -> tuple[str, str]:
    """``(agent_id, cmd)`` of ``agents.{id}.commands.{cmd}``; ``ValueError`` otherwise."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "agents" or parts[2] != "commands":
        raise ValueError(f"{subject!r} is not agents.{{id}}.commands.{{cmd}}")
    return parts[1], parts[3]


def parse_control(subject: str) -> str:
    """The action of ``system.control.{action}``, ``system.node.{node}.{action}`` or
    ``agents.{id}.control.{action}``: the last token."""
    return subject.rsplit(".", 1)[-1]


def task_queue(kind: str, priority: str) -> str:
    if priority not in PRIORITIES:
        raise SpecError(None, "priority", priority, f"use one of: {', '.join(PRIORITIES)}")
    return f"tasks.{check_token(kind, 'kind')}.queue.{priority}"


def task_dead(kind: str) -> str:
    return f"tasks.{check_token(kind, 'kind')}.dead"


def task_progress(task_id: str) -> str:
    return f"tasks.{check_token(task_id, 'task_id')}.progress"


def task_result(task_id: str) -> str:
    return f"tasks.{check_token(task_id, 'task_id')}.result"
