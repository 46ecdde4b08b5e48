"""Who the HTTP request being served is: set by the ``Guard``, read by handlers and the MCP dispatcher.

The Guard resolves the request's credential (``security.credential``) to a
``mistersmith.scopes.Identity`` and puts it in the ASGI scope
(``scope["mistersmith.identity"]``) and in a context variable for the
request's task (``request_identity()``), for code that has no request at hand
(``tools.call_tool``). It also makes the request act for that identity in the
audit trail (``mistersmith.audit.acting``: door ``mcp`` on ``/mcp``, else ``http``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import Scope

from mistersmith.runtime import Runtime

from mistersmith.audit import acting
from mistersmith.scopes import ANONYMOUS, Identity

__all__ = ["SCOPE_KEY", "TOOL_ACTIONS", "identity_of", "record_refusal", "request_identity", "serving"]

SCOPE_KEY = "mistersmith.identity"
_IDENTITY: contextvars.ContextVar[Identity] = contextvars.ContextVar("mistersmith_identity", default=ANONYMOUS)


def request_identity() -> Identity:
    """The identity of the request this task serves (``ANONYMOUS`` outside one: a server with no token)."""
    return _IDENTITY.get()


def identity_of(scope: Scope) -> Identity:
    """The identity the Guard put in an ASGI scope (``ANONYMOUS`` if none)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Identity) else ANONYMOUS


@contextmanager
def serving(scope: Scope, identity: Identity) -> Iterator[None]:
    """While the app serves ``scope``: it is ``identity``'s, and its actions are recorded as theirs."""
    scope[SCOPE_KEY] = identity
    token = _IDENTITY.set(identity)
    try:
        with acting("mcp" if scope.get("path") == "/mcp" else "http", identity.name):
            yield
    finally:
        _IDENTITY.reset(token)


TOOL_ACTIONS = {"spawn_agent": "spawn", "stop_agent": "stop", "restart_agent": "restart", "send_command": "command"}
"""The tools whose refusal is an audited action (what the Runtime would have recorded had it run)."""


def record_refusal(runtime: Runtime, tool: str, arguments: dict[str, object]) -> None:
    """A refused call of an audited tool, recorded as its action with the outcome ``forbidden``."""
    action = TOOL_ACTIONS.get(tool)
    if action is None:
        return
    target = arguments.get("agent_id")
    detail = arguments.get("command") if action == "command" else arguments.get("kind")
    runtime.record_action(action, target if isinstance(target, str) else "",
                          detail=detail if isinstance(detail, str) else None, outcome="forbidden")
