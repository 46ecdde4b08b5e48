"""``RemoteAgents``: the ``RemoteCommands`` port: a command to an agent this node does not host, over NATS.

What the web shim uses when an MCP ``send_command`` names an agent that runs
on another node: the request goes to ``agents.<id>.commands.<cmd>`` as any
client's would (``AgentClient``), carrying the caller's deadline, its
correlation id and its trace context, and streaming its progress when the
caller reads it. A cancel goes to ``agents.<id>.control.cancel``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nats.aio.client import Client as NATS

from .client import AgentClient

__all__ = ["RemoteAgents"]

TREES_TIMEOUT_S = 2.0
"""How long the console waits for the other nodes' trees (those that answer in time are shown)."""

ProgressFn = Callable[[Any, float | None, float | None], None]


class RemoteAgents:
    """Requests to agents on other nodes, over this node's NATS connection (on its loop)."""

    def __init__(self, nc: NATS) -> None:
        self._client = AgentClient(nc)

    async def remote_ask(self, agent_id: str, command: str, payload: Mapping[str, Any] | None, *, timeout_s: float,
                         correlation_id: str | None = None, progress: ProgressFn | None = None) -> Any:
        """The command's result from whichever node hosts ``agent_id``; its progress to ``progress``."""
        if progress is None:
            return await self._client.request(agent_id, command, payload, timeout_s=timeout_s,
                                              correlation_id=correlation_id)
        stream = await self._client.stream(agent_id, command, payload, timeout_s=timeout_s,
                                           correlation_id=correlation_id)
        async for item in stream:
            progress(item.get("data"), item.get("done"), item.get("total"))
        return stream.result

    async def remote_cancel(self, agent_id: str, correlation_id: str) -> bool:
        return await self._client.cancel(agent_id, correlation_id)

    async def remote_trees(self) -> dict[str, Any]:
        answer = await self._client.control("tree", {}, timeout_s=TREES_TIMEOUT_S)
        trees: dict[str, Any] = answer.get("trees", {})
        return trees
