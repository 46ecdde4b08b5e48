"""The MCP resources: ``agent://{id}`` (an agent's status) and ``discovery://{id}``.

``resources/list`` names one concrete resource per agent (paged); the two
templates are in ``resources/templates/list``. A URI that names nothing is
JSON-RPC error -32002 (resource not found), as the specification says.
"""

from __future__ import annotations

from typing import Any

import orjson

from mistersmith.errors import UnknownAgentError

from mistersmith.scopes import RESOURCE_SCOPE, agent_refusal

from .backends import Backends
from .identity import request_identity
from .jsonrpc import INVALID_PARAMS, INVALID_REQUEST, RESOURCE_NOT_FOUND, RpcError

__all__ = ["PAGE_SIZE", "TEMPLATES", "list_resources", "read_resource"]

PAGE_SIZE = 500
_JSON = "application/json"

TEMPLATES: list[dict[str, Any]] = [
    {"uriTemplate": "agent://{id}", "name": "agent", "title": "Agent status",
     "description": "An agent's state, restart count, mailbox depth and config.", "mimeType": _JSON},
    {"uriTemplate": "discovery://{id}", "name": "discovery", "title": "Discovery",
     "description": "One shared discovery, by its id.", "mimeType": _JSON},
]


def _check_read(agent_id: str | None = None) -> None:
    """The ``read`` scope (and, for an agent, the token's agents glob), else a JSON-RPC error naming it."""
    identity = request_identity()
    why = None if identity.allows(RESOURCE_SCOPE) else (
        f"Forbidden: resources need the {RESOURCE_SCOPE!r} scope; token {identity.name!r} lacks it")
    if why is None and agent_id is not None:
        refused = agent_refusal(identity, agent_id)
        why = None if refused is None else f"Forbidden: {refused}"
    if why is not None:
        raise RpcError(INVALID_REQUEST, why, {"code": "forbidden", "scope": RESOURCE_SCOPE})


def list_resources(backends: Backends, params: dict[str, Any]) -> dict[str, Any]:
    _check_read()
    cursor = params.get("cursor")
    start = 0
    if cursor is not None:
        if not isinstance(cursor, str) or not cursor.isdigit():
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor")
        start = int(cursor)
    ids = sorted(str(a["id"]) for a in backends.runtime.list_agents())
    page = ids[start:start + PAGE_SIZE]
    result: dict[str, Any] = {"resources": [
        {"uri": f"agent://{agent_id}", "name": agent_id, "title": f"Agent {agent_id}", "mimeType": _JSON}
        for agent_id in page
    ]}
    if start + PAGE_SIZE < len(ids):
        result["nextCursor"] = str(start + PAGE_SIZE)
    return result


async def read_resource(backends: Backends, params: dict[str, Any]) -> dict[str, Any]:
    uri = params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RpcError(INVALID_PARAMS, 'Invalid params: "uri" must be a resource URI such as agent://{id}')
    scheme, sep, name = uri.partition("://")
    _check_read(name if scheme == "agent" else None)
    value: Any = None
    if sep and name and scheme == "agent":
        try:
            value = backends.runtime.get_agent(name)
        except UnknownAgentError:
            value = None
    elif sep and name and scheme == "discovery" and backends.discoveries is not None:
        found = await backends.discoveries.get(name)
        value = found.to_dict() if found is not None else None
    if value is None:
        raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
    return {"contents": [{"uri": uri, "mimeType": _JSON, "text": orjson.dumps(value).decode()}]}
