"""What ``system.control.*`` requests must look like: each payload checked, or refused with a
clear error (``invalid_payload`` for its shape, ``invalid_spec`` for a value the spec refuses). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mistersmith.errors import MisterSmithError
from mistersmith.ids import ID_RULE
from mistersmith.supervisors import RESTARTS as _RESTARTS

from . import subjects

__all__ = [
    "Refused",
    "agent_id_of",
    "bad",
    "check_drain",
    "check_restart",
    "check_spawn",
    "check_state",
    "empty_only",
    "matches",
    "node_only",
    "parse_filters",
]

_SPAWN_KEYS = frozenset({"kind", "agent_id", "config", "restart", "supervisor", "durable", "node", "idle_timeout_s"})
_FILTER_KEYS = frozenset({"kind", "node", "command"})
_DRAIN_KEYS = frozenset({"node", "exit"})


class Refused(MisterSmithError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def bad(problem: str) -> Refused:
    return Refused("invalid_payload", problem)


def check_spawn(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a spawn payload and return it: its shape (an unknown key, a value of the wrong type)
    is ``invalid_payload``; a well-formed value the spec refuses (a restart type) is ``invalid_spec``,
    as the Runtime's refusals are (an unknown kind, a config the kind refuses)."""
    unknown = sorted(set(payload) - _SPAWN_KEYS)
    if unknown:
        raise bad(f"spawn: unknown key {unknown[0]!r}; use: {', '.join(sorted(_SPAWN_KEYS))}")
    if not subjects.is_token(payload.get("kind")):
        raise bad(f"spawn: kind={payload.get('kind')!r}; name a registered kind")
    for key in ("agent_id", "node"):
        if payload.get(key) is not None and not subjects.is_token(payload[key]):
            raise bad(f"spawn: {key}={payload[key]!r}; {ID_RULE}")
    if payload.get("config") is not None and not isinstance(payload["config"], dict):
        raise bad(f"spawn: config={payload['config']!r}; use a JSON object")
    if payload.get("restart") is not None and payload["restart"] not in _RESTARTS:
        # a well-formed value the spec refuses: invalid_spec, as an unknown kind is (the reference's rule)
        raise Refused("invalid_spec", f"spawn: restart={payload['restart']!r} is not allowed; use one of: "
                                       f"{', '.join(_RESTARTS)}")
    if payload.get("durable") is not None and not isinstance(payload["durable"], bool):
        raise bad(f"spawn: durable={payload['durable']!r}; use true or false")
    idle = payload.get("idle_timeout_s")
    if idle is not None and (isinstance(idle, bool) or not isinstance(idle, (int, float)) or not idle > 0):
        raise bad(f"spawn: idle_timeout_s={idle!r}; use a number of seconds > 0")
    if payload.get("supervisor") is not None and not isinstance(payload["supervisor"], str):
        raise bad(f"spawn: supervisor={payload['supervisor']!r}; use a supervisor path such as 'root'")
    return dict(payload)


def agent_id_of(payload: Mapping[str, Any], action: str) -> str:
    if set(payload) - {"agent_id"} or not subjects.is_token(payload.get("agent_id")):
        raise bad(f"{action}: use {{\"agent_id\": \"<id>\"}}")
    return str(payload["agent_id"])


def check_restart(payload: Mapping[str, Any]) -> tuple[str, bool]:
    """The agent id of a ``restart`` payload, and whether a durable agent's state is to be reset."""
    reset = payload.get("reset_state", False)
    if set(payload) - {"agent_id", "reset_state"} or not isinstance(reset, bool):
        raise bad('restart: use {"agent_id": "<id>"} or {"agent_id": "<id>", "reset_state": true} (a durable '
                  'agent starts again from an empty state)')
    return agent_id_of({"agent_id": payload.get("agent_id")}, "restart"), reset


def check_cancel(payload: Mapping[str, Any]) -> tuple[str, str]:
    """The agent id and the correlation id of a ``cancel`` payload."""
    cid = payload.get("correlation_id")
    if set(payload) - {"agent_id", "correlation_id"} or not isinstance(cid, str) or not cid:
        raise bad('cancel: use {"correlation_id": "<the correlation id the command was sent with>"}')
    return agent_id_of({"agent_id": payload.get("agent_id")}, "cancel"), cid


def node_only(payload: Mapping[str, Any], action: str) -> str | None:
    """The optional ``node`` of a ``{}`` or ``{"node": "<node id>"}`` payload."""
    node = payload.get("node")
    if set(payload) - {"node"} or (node is not None and not subjects.is_token(node)):
        raise bad(f'{action}: use {{}} or {{"node": "<node id>"}}')
    return None if node is None else str(node)


def parse_filters(payload: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(payload) - _FILTER_KEYS)
    if unknown:
        raise bad(f"unknown filter {unknown[0]!r}; use: {', '.join(sorted(_FILTER_KEYS))}")
    for key, value in payload.items():
        if value is not None and not subjects.is_token(value):
            raise bad(f"filter {key}={value!r}; use a subject token")
    return {k: v for k, v in payload.items() if v is not None}


def matches(agent: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    """Whether an agent description (from ``system.nodes.list``) passes ``kind``/``node``/``command`` filters."""
    if "kind" in filters and agent.get("kind") != filters["kind"]:
        return False
    if "node" in filters and agent.get("node_id") != filters["node"]:
        return False
    return "command" not in filters or filters["command"] in (agent.get("commands") or ())


def check_state(payload: Mapping[str, Any]) -> tuple[str, int | None]:
    """``(agent_id, version or None)`` of a ``state`` request."""
    version = payload.get("version")
    if set(payload) - {"agent_id", "version"} or not subjects.is_token(payload.get("agent_id")) or (
        version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0)
    ):
        raise bad('state: use {"agent_id": "<id>"} or {"agent_id": "<id>", "version": <int >= 0>}')
    return str(payload["agent_id"]), version


def empty_only(payload: Mapping[str, Any], action: str) -> None:
    """A request that takes nothing: ``{}`` (or an empty body)."""
    if payload:
        raise bad(f"{action}: use {{}} (unknown key {sorted(payload)[0]!r})")


def check_drain(payload: Mapping[str, Any]) -> tuple[str | None, bool]:
    """``(node or None, exit)`` of a ``drain`` request ``{"node"?, "exit"?}``; ``exit`` defaults to false.
    Whether ``node`` may be left out depends on the subject (the control plane decides)."""
    unknown = sorted(set(payload) - _DRAIN_KEYS)
    if unknown:
        raise bad(f"drain: unknown key {unknown[0]!r}; use {{\"node\": \"<node id>\", \"exit\": true|false}}")
    node, exit_ = payload.get("node"), payload.get("exit")
    if exit_ is None:
        exit_ = False
    if node is not None and not subjects.is_token(node):
        raise bad(f"drain: node={node!r}; {ID_RULE}")
    if not isinstance(exit_, bool):
        raise bad(f"drain: exit={exit_!r}; use true (stop the node once drained) or false")
    return (None if node is None else str(node)), exit_
