"""The NATS subject space, stated once: every subject MisterSmith uses, as a template. Pure data.

Each ``{field}`` is one subject token (``mistersmith.ids``). The bridge builds
and checks subjects from these templates (``mistersmith.bridge.subjects``),
the web's ``/info`` lists them as they are, and ``Discovery.subject`` fills
one in. The subjects are a public contract: clients in any language use them.

- ``commands``: request/reply with a reply subject, a tell without;
- ``agent_control``: ``stop``, ``restart``, ``get`` of one agent, answered by
  the node that hosts it (what ``system.control.*`` forwards to);
- ``status``: supervision events and ``heartbeat``;
- ``control``: the control plane (request/reply, one node of the queue group);
- ``node_control``: one node's control plane (a ``spawn`` or ``ping`` that names
  a node is forwarded here);
- ``nodes``: ``hello``, ``here``, ``bye`` (membership), and the scatters of
  ``list`` and ``tree``;
- ``supervisor_events``: supervision events of supervisors (no agent id);
- ``announce`` and ``query``: service discovery, the directory of agents;
- ``discoveries``: shared knowledge;
- ``task_queue``, ``task_dead``, ``task_progress``, ``task_result``: the task queue.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["SUBJECT_TEMPLATES", "render", "wildcard"]

SUBJECT_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "commands": "agents.{agent_id}.commands.{command}",
    "agent_control": "agents.{agent_id}.control.{action}",
    "status": "agents.{agent_id}.status.{event_type}",
    "control": "system.control.{action}",
    "node_control": "system.node.{node_id}.{action}",
    "nodes": "system.nodes.{what}",
    "supervisor_events": "system.events.{node_id}.{event_type}",
    "announce": "agents.discovery.announce",
    "query": "agents.discovery.query",
    "discoveries": "discoveries.{agent_id}.{discovery_type}",
    "task_queue": "tasks.{kind}.queue.{priority}",
    "task_dead": "tasks.{kind}.dead",
    "task_progress": "tasks.{task_id}.progress",
    "task_result": "tasks.{task_id}.result",
})


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render(name: str, **fields: str) -> str:
    """The subject ``name`` with its fields filled in. Checks nothing: the bridge's builders check
    every token first (``mistersmith.bridge.subjects``)."""
    return SUBJECT_TEMPLATES[name].format(**fields)


def wildcard(name: str, **fields: str) -> str:
    """The subject ``name`` with each field not given as ``*``: what a subscriber listens on
    (``wildcard("discoveries")`` is ``discoveries.*.*``)."""
    template = SUBJECT_TEMPLATES[name]
    unknown = sorted(set(fields) - set(_fields(template)))
    if unknown:
        raise ValueError(f"{name} ({template}) has no field {unknown[0]!r}")
    return template.format(**{f: fields.get(f, "*") for f in _fields(template)})
