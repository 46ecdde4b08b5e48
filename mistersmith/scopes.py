"""Least privilege: the scopes, what each door's calls need, and who may make them. Pure code.

Four scopes, each granting its own calls (no scope implies another):

- ``read``: health, info, stats, metrics, list, get, tree, replay, state reads, the streams;
- ``command``: sending commands to agents, submitting tasks, sharing discoveries;
- ``control``: spawn, stop, restart, cancel, drain, rebalance;
- ``admin``: shutdown, migrate, reading the audit log.

Tokens (``[[auth.tokens]]``) and NATS users (``[[auth.nats_users]]``) are in
``mistersmith.tokens``; a request's token resolves to an ``Identity`` here.
``MISTERSMITH_API_TOKEN`` (``http.api_token``) is a token with every scope,
named ``api_token``.

The tables here (``ROUTE_SCOPES``, ``TOOL_SCOPES``, ``CLI_SCOPES``,
``NATS_SCOPES``) are the one statement of what needs what; the doors and the
reference docs follow them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from mistersmith.errors import SpecError

__all__ = [
    "ALL_SCOPES",
    "ANONYMOUS",
    "CLI_SCOPES",
    "LEGACY_TOKEN_NAME",
    "NATS_SCOPES",
    "NATS_SUBSCRIBE",
    "RESOURCE_SCOPE",
    "ROUTE_PATTERNS",
    "ROUTE_SCOPES",
    "SCOPES",
    "TOOL_SCOPES",
    "Identity",
    "agent_refusal",
    "parse_scopes",
    "route_agent",
    "route_refusal",
    "route_scope",
    "tool_refusal",
    "tool_scope",
]

SCOPES: tuple[str, ...] = ("read", "command", "control", "admin")
ALL_SCOPES = frozenset(SCOPES)
LEGACY_TOKEN_NAME = "api_token"
"""The identity of ``MISTERSMITH_API_TOKEN``: every scope, every agent."""

ROUTE_SCOPES: Mapping[str, str | None] = {
    "/health": None,  # public: orchestrators probe it without a token
    "/mcp": None,  # any valid token; each tools/call needs its tool's scope (TOOL_SCOPES)
    "/info": "read",
    "/stats/nats": "read",
    "/stats/discoveries": "read",
    "/cluster": "read",
    "/metrics": "read",
    "/discoveries/stream": "read",
    "/events/stream": "read",
    "/ui": None,  # the console's page: it is the login (its API is below)
}
"""The scope each HTTP route needs (None: any valid token, or none for the public ones)."""

ROUTE_PATTERNS: tuple[tuple[str, str | None], ...] = (
    ("/ui/", None),
    ("/ui/static/*", None),
    ("/ui/login", None),
    ("/ui/logout", None),
    ("/ui/api/agents/*/command", "command"),
    ("/ui/api/agents/*/restart", "control"),
    ("/ui/api/agents/*/stop", "control"),
    ("/ui/api/*", "read"),
)
"""Paths with parameters (the console's), first match wins (``fnmatch``); the agent id of
``/ui/api/agents/{id}...`` is held to the token's agents glob too (``route_agent``)."""

DEFAULT_ROUTE_SCOPE = "read"
"""What a path not in ``ROUTE_SCOPES`` needs (a route added later starts least open)."""

TOOL_SCOPES: Mapping[str, str] = {
    "spawn_agent": "control",
    "stop_agent": "control",
    "restart_agent": "control",
    "list_agents": "read",
    "get_agent": "read",
    "get_agent_state": "read",
    "supervision_tree": "read",
    "send_command": "command",
    "submit_task": "command",
    "get_task": "read",
    "share_discovery": "command",
    "query_discoveries": "read",
    "replay_events": "read",
    "system_health": "read",
    "list_nodes": "read",
    "audit_log": "admin",
}
"""The scope each MCP tool needs. A tool not listed needs ``admin`` (see ``tool_scope``)."""

RESOURCE_SCOPE = "read"
"""MCP ``resources/read`` and ``resources/list``."""

CLI_SCOPES: Mapping[str, str | None] = {
    "serve": None, "config": None, "completion": None, "nats-url": None, "bench": None, "token": None,
    "spawn": "control", "stop": "control", "restart": "control", "drain": "control", "rebalance": "control",
    "send": "command",
    "agents": "read", "state": "read", "tree": "read", "kinds": "read", "health": "read", "nodes": "read",
    "replay": "read",
    "shutdown": "admin", "migrate": "admin", "audit": "admin", "psql": "admin", "cluster": "admin",
}
"""The scope each CLI command's call needs at the node (None: it calls no node; ``replay``,
``migrate``, ``audit`` and ``psql`` use the database's own credentials)."""

NATS_SCOPES: Mapping[str, str] = {
    "agents.*.commands.*": "command",
    "agents.*.control.get": "read",
    "agents.*.control.stop": "control",
    "agents.*.control.restart": "control",
    "agents.*.control.cancel": "control",
    "system.control.spawn": "control",
    "system.control.stop": "control",
    "system.control.restart": "control",
    "system.control.drain": "control",
    "system.control.rebalance": "control",
    "system.control.get": "read",
    "system.control.list": "read",
    "system.control.tree": "read",
    "system.control.state": "read",
    "system.control.ping": "read",
    "system.control.kinds": "read",
    "system.control.nodes": "read",
    "system.control.shutdown": "admin",
    "system.node.*.spawn": "control",
    "system.node.*.drain": "control",
    "system.node.*.rebalance": "control",
    "system.node.*.ping": "read",
    "system.node.*.kinds": "read",
    "system.node.*.shutdown": "admin",
    "agents.discovery.query": "read",
    "discoveries.*.*": "command",
    "tasks.*.queue.*": "command",
}
"""The scope each NATS subject family needs to publish on (a request is a publish)."""

NATS_SUBSCRIBE: Mapping[str, str] = {
    "agents.*.status.>": "read",
    "system.events.>": "read",
    "system.nodes.*": "read",
    "discoveries.>": "read",
    "tasks.*.progress": "read",
    "tasks.*.result": "read",
}
"""The scope each NATS subject family needs to subscribe to (the streams); every user may
subscribe to its own reply inbox."""

@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: a token's name, its scopes, and the agents glob it is held to (None: any)."""

    name: str
    scopes: frozenset[str]
    agents: str | None = None

    def allows(self, scope: str | None) -> bool:
        return scope is None or scope in self.scopes

    def may_touch(self, agent_id: str) -> bool:
        return self.agents is None or fnmatch.fnmatchcase(agent_id, self.agents)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "scopes": sorted(self.scopes, key=SCOPES.index), "agents": self.agents}


ANONYMOUS = Identity("anonymous", ALL_SCOPES)
"""A request to a server with no token configured (loopback, or ``allow_insecure``): every scope."""

def parse_scopes(key: str, value: object) -> frozenset[str]:
    """A list (or comma-separated text) of scope names, at least one, each known."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(s, str) for s in items):
        raise SpecError(None, key, value, f"use a list of scopes from: {', '.join(SCOPES)}")
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(scopes - ALL_SCOPES)
    if unknown or not scopes:
        raise SpecError(None, key, value, f"{', '.join(unknown) or 'none'}: use scopes from: {', '.join(SCOPES)}")
    return scopes

def route_scope(path: str) -> str | None:
    """The scope an HTTP path needs (``ROUTE_SCOPES``, then ``ROUTE_PATTERNS``; ``read`` for one not listed)."""
    if path in ROUTE_SCOPES:
        return ROUTE_SCOPES[path]
    for pattern, scope in ROUTE_PATTERNS:
        if fnmatch.fnmatchcase(path, pattern):
            return scope
    return DEFAULT_ROUTE_SCOPE


_AGENT_PATH = "/ui/api/agents/"


def route_agent(path: str) -> str | None:
    """The agent id an HTTP path names (``/ui/api/agents/{id}...``), or None."""
    if not path.startswith(_AGENT_PATH):
        return None
    agent_id = path[len(_AGENT_PATH):].split("/", 1)[0]
    return agent_id or None


def route_refusal(identity: Identity, path: str) -> tuple[str | None, str] | None:
    """``(scope needed, message)`` when ``identity`` may not call ``path``, else None."""
    needed = route_scope(path)
    if not identity.allows(needed):
        return needed, (f"Forbidden: {path} needs the {needed!r} scope; token {identity.name!r} has "
                        f"{', '.join(sorted(identity.scopes, key=SCOPES.index)) or 'none'}")
    agent_id = route_agent(path)
    why = agent_refusal(identity, agent_id) if agent_id is not None else None
    return None if why is None else (needed, f"Forbidden: {why}")


def tool_scope(name: str) -> str:
    return TOOL_SCOPES.get(name, "admin")


def agent_refusal(identity: Identity, agent_id: object) -> str | None:
    """Why ``identity`` may not touch ``agent_id`` (a message), or None."""
    if identity.agents is None:
        return None
    if not isinstance(agent_id, str):
        return f"token {identity.name!r} may only touch agents matching {identity.agents!r}: name the agent_id"
    if not identity.may_touch(agent_id):
        return f"token {identity.name!r} may not touch agent {agent_id!r}: only agents matching {identity.agents!r}"
    return None


def tool_refusal(identity: Identity, tool: str, arguments: Mapping[str, object]) -> dict[str, object] | None:
    """The ``forbidden`` error of a tools/call ``identity`` may not make, or None.

    The tool's scope first; then, for a token held to an agents glob, the
    ``agent_id`` argument (which ``spawn_agent`` must then give).
    """
    needed = tool_scope(tool)
    if not identity.allows(needed):
        return {"code": "forbidden", "scope": needed,
                "message": f"Forbidden: tool {tool!r} needs the {needed!r} scope; token {identity.name!r} has "
                           f"{', '.join(sorted(identity.scopes, key=SCOPES.index))}"}
    if identity.agents is not None and ("agent_id" in arguments or tool == "spawn_agent"):
        why = agent_refusal(identity, arguments.get("agent_id"))
        if why is not None:
            return {"code": "forbidden", "scope": needed, "agents": identity.agents, "message": f"Forbidden: {why}"}
    return None
