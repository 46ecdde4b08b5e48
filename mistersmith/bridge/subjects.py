"""NATS subjects: building, parsing and validating them. Pure code.

The templates are stated once, in ``mistersmith.subjects.SUBJECT_TEMPLATES``
(the web's ``/info`` lists the same ones); this module fills them in, and
checks first that every field is one subject token (``mistersmith.ids``: 1-128
letters, digits, ``_`` or ``-``, as agent ids, node ids, kinds and command
names are) and that an action is one the subject takes.

- ``agents.{agent_id}.commands.{command}``, ``agents.{agent_id}.control.{action}``,
  ``agents.{agent_id}.status.{event_type}``;
- ``system.control.{action}``, ``system.node.{node_id}.{action}``,
  ``system.nodes.{hello,here,bye,list,tree}``, ``system.events.{node_id}.{event_type}``;
- ``agents.discovery.announce`` and ``agents.discovery.query`` (the service directory);
- ``discoveries.{agent_id}.{discovery_type}`` (shared knowledge);
- ``tasks.{kind}.queue.{priority}``, ``tasks.{kind}.dead``,
  ``tasks.{task_id}.progress``, ``tasks.{task_id}.result``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mistersmith.errors import SpecError
from mistersmith.ids import check_id as check_token
from mistersmith.ids import is_id as is_token
from mistersmith.subjects import SUBJECT_TEMPLATES, render
from mistersmith.subjects import wildcard as _wildcard

__all__ = [
    "AGENT_ACTIONS",
    "ANNOUNCE",
    "CONTROL_ACTIONS",
    "NODES",
    "NODE_ACTIONS",
    "PRIORITIES",
    "QUERY",
    "SPAWN_QUEUE",
    "ControlSubject",
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
    "parse_nodes",
    "status",
    "supervisor_events",
    "task_dead",
    "task_progress",
    "task_queue",
    "task_result",
    "wildcard",
]

CONTROL_ACTIONS: tuple[str, ...] = (
    "spawn", "stop", "restart", "list", "get", "ping", "shutdown", "tree", "kinds", "state", "nodes", "drain",
    "rebalance",
)
AGENT_ACTIONS: tuple[str, ...] = ("stop", "restart", "get", "cancel")
NODE_ACTIONS: tuple[str, ...] = ("spawn", "ping", "shutdown", "kinds", "drain", "rebalance")
NODES: tuple[str, ...] = ("hello", "here", "bye", "list", "tree")
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")

ANNOUNCE = render("announce")
QUERY = render("query")
SPAWN_QUEUE = "mistersmith.control"
"""The queue group of ``system.control.*``: exactly one node answers each request."""


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(None, key, value, f"use one of: {', '.join(allowed)}")
    return value


def command(agent_id: str, cmd: str) -> str:
    return render("commands", agent_id=check_token(agent_id, "agent_id"), command=check_token(cmd, "command"))


def command_wildcard(agent_id: str) -> str:
    """What the hosting node subscribes to for one agent's commands."""
    return wildcard("commands", agent_id=agent_id)


def agent_control(agent_id: str, action: str) -> str:
    _one_of("action", action, AGENT_ACTIONS)
    return render("agent_control", agent_id=check_token(agent_id, "agent_id"), action=action)


def agent_control_wildcard(agent_id: str) -> str:
    return wildcard("agent_control", agent_id=agent_id)


def status(agent_id: str, event_type: str) -> str:
    return render("status", agent_id=check_token(agent_id, "agent_id"),
                  event_type=check_token(event_type, "event_type"))


def supervisor_events(node_id: str, event_type: str) -> str:
    return render("supervisor_events", node_id=check_token(node_id, "node_id"),
                  event_type=check_token(event_type, "event_type"))


def control(action: str) -> str:
    return render("control", action=_one_of("action", action, CONTROL_ACTIONS))


def node_control(node_id: str, action: str) -> str:
    _one_of("action", action, NODE_ACTIONS)
    return render("node_control", node_id=check_token(node_id, "node_id"), action=action)


def nodes(what: str) -> str:
    """``system.nodes.{hello,here,bye,list,tree}``."""
    if what not in NODES:
        raise SpecError(None, "what", what, "use hello, here, bye, list or tree")
    return render("nodes", what=what)


def task_queue(kind: str, priority: str) -> str:
    _one_of("priority", priority, PRIORITIES)
    return render("task_queue", kind=check_token(kind, "kind"), priority=priority)


def task_dead(kind: str) -> str:
    return render("task_dead", kind=check_token(kind, "kind"))


def task_progress(task_id: str) -> str:
    return render("task_progress", task_id=check_token(task_id, "task_id"))


def task_result(task_id: str) -> str:
    return render("task_result", task_id=check_token(task_id, "task_id"))


def wildcard(name: str, **fields: str) -> str:
    """The subject ``name`` (a ``SUBJECT_TEMPLATES`` key) with the ``fields`` given, each checked
    as a token, and ``*`` for the others: ``wildcard("task_result")`` is ``tasks.*.result``,
    ``wildcard("node_control", node_id="n1")`` is ``system.node.n1.*``."""
    if name not in SUBJECT_TEMPLATES:
        raise SpecError(None, "name", name, f"use one of: {', '.join(SUBJECT_TEMPLATES)}")
    return _wildcard(name, **{key: check_token(value, key) for key, value in fields.items()})


# -- parsing ------------------------------------------------------------------------


def parse_command(subject: str) -> tuple[str, str]:
    """``(agent_id, cmd)`` of ``agents.{id}.commands.{cmd}``; ``ValueError`` otherwise."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "agents" or parts[2] != "commands":
        raise ValueError(f"{subject!r} is not agents.{{id}}.commands.{{cmd}}")
    return parts[1], parts[3]


@dataclass(frozen=True, slots=True)
class ControlSubject:
    """A control subject, parsed: its ``action``, and the agent or node it names, if any."""

    action: str
    agent_id: str | None = None
    """Set for ``agents.{agent_id}.control.{action}``."""
    node_id: str | None = None
    """Set for ``system.node.{node_id}.{action}``."""

    @property
    def routed(self) -> bool:
        """Already routed to the node that got it (an agent's or a node's own subject), so never
        forwarded again."""
        return self.agent_id is not None or self.node_id is not None


def parse_control(subject: str) -> ControlSubject:
    """``system.control.{action}``, ``system.node.{node_id}.{action}`` or
    ``agents.{agent_id}.control.{action}``; ``ValueError`` otherwise. The action is not checked."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[:2] == ["system", "control"]:
        return ControlSubject(parts[2])
    if len(parts) == 4 and parts[:2] == ["system", "node"]:
        return ControlSubject(parts[3], node_id=parts[2])
    if len(parts) == 4 and parts[0] == "agents" and parts[2] == "control":
        return ControlSubject(parts[3], agent_id=parts[1])
    raise ValueError(f"{subject!r} is not system.control.{{action}}, system.node.{{node_id}}.{{action}} "
                     "or agents.{agent_id}.control.{action}")


def parse_nodes(subject: str) -> str:
    """The ``{what}`` of ``system.nodes.{what}`` (``hello``, ``here``...); ``ValueError`` otherwise."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[:2] != ["system", "nodes"] or parts[2] not in NODES:
        raise ValueError(f"{subject!r} is not system.nodes.{{{','.join(NODES)}}}")
    return parts[2]
