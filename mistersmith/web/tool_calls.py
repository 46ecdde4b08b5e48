"""``ToolCall``: one in-flight MCP ``tools/call``: its progress, and how it is cancelled.

A tool handler finds its call in ``current_call()`` (a context variable set
for the task that runs it):

- ``correlation_id``: the command's correlation id, so the call can be
  cancelled in the agent too (``Runtime.cancel``);
- ``report(data, done, total)``: a ``notifications/progress`` for the
  request's ``_meta.progressToken`` (only when the client sent one and reads
  the SSE response stream; otherwise ``wants_progress`` is False and progress
  is not produced at all).

``InFlight`` keeps the calls by ``(session, request id)`` so that a
``notifications/cancelled`` (the 2025 revisions) finds and cancels one; at
2026-07-28 a client cancels by closing the request's response stream, which
the endpoint sees as the HTTP disconnect. Either way the handler's task is
cancelled, the command with it, and no response is sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from typing import Any

from collections.abc import AsyncIterator, Callable

import orjson

__all__ = ["InFlight", "ToolCall", "current_call"]

_CURRENT: contextvars.ContextVar[ToolCall | None] = contextvars.ContextVar("mistersmith_tool_call", default=None)

_SSE = b"event: message\ndata: "
_QUEUE_MAX = 1000
"""Unsent progress notifications kept per call; past that the oldest are dropped (a slow reader never
holds the agent up)."""


def current_call() -> ToolCall | None:
    """The tool call the running handler serves, if any."""
    return _CURRENT.get()


class ToolCall:
    """One ``tools/call`` request while it runs (on the event loop)."""

    def __init__(self, request_id: Any, progress_token: Any = None) -> None:
        self.request_id = request_id
        self.progress_token = progress_token
        self.correlation_id = f"mcp-{uuid.uuid4().hex}"
        self.notifications: asyncio.Queue[bytes] = asyncio.Queue()
        self.cancelled = False
        self.dropped = 0
        self._last = 0.0

    @property
    def wants_progress(self) -> bool:
        return self.progress_token is not None

    def report(self, data: Any, done: float | None = None, total: float | None = None) -> None:
        """Queue a ``notifications/progress`` (``progress`` always increases, as the specification asks)."""
        if self.progress_token is None:
            return
        progress = float(done) if done is not None and done > self._last else self._last + 1
        self._last = progress
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if data is not None:
            params["message"] = data if isinstance(data, str) else orjson.dumps(data, default=repr).decode()
        if self.notifications.qsize() >= _QUEUE_MAX:
            self.notifications.get_nowait()
            self.dropped += 1
        self.notifications.put_nowait(orjson.dumps(
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}))

    async def events(self, task: asyncio.Task[Any], answered: Callable[[], bytes | None]) -> AsyncIterator[bytes]:
        """The SSE response of a call that streams: each progress notification as it comes, then
        ``answered()`` (its response; none once it was cancelled). A client that leaves mid-stream
        (the generator is closed) cancels ``task``: the call stops with it."""
        queue = self.notifications
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((task, getter), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                yield _SSE + getter.result() + b"\n\n"
            while not queue.empty():
                yield _SSE + queue.get_nowait() + b"\n\n"
            body = answered()
            if body is not None:
                yield _SSE + body + b"\n\n"
        finally:
            if not task.done():
                task.cancel()
                answered()

    def enter(self) -> contextvars.Token[ToolCall | None]:
        return _CURRENT.set(self)

    @staticmethod
    def leave(token: contextvars.Token[ToolCall | None]) -> None:
        _CURRENT.reset(token)


class InFlight:
    """The running calls by ``(session id, request id)``, for ``notifications/cancelled``."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], tuple[ToolCall, asyncio.Task[Any]]] = {}

    def add(self, session: str | None, call: ToolCall, task: asyncio.Task[Any]) -> tuple[str, str]:
        key = (session or "", orjson.dumps(call.request_id).decode())
        self._calls[key] = (call, task)
        return key

    def remove(self, key: tuple[str, str], call: ToolCall) -> None:
        entry = self._calls.get(key)
        if entry is not None and entry[0] is call:
            del self._calls[key]

    def cancel(self, session: str | None, request_id: Any) -> bool:
        """Cancel the call ``request_id`` of ``session``; False if none runs (it finished, or never was)."""
        entry = self._calls.pop((session or "", orjson.dumps(request_id).decode()), None)
        if entry is None:
            return False
        call, task = entry
        call.cancelled = True
        task.cancel()
        return True

    def __len__(self) -> int:
        return len(self._calls)
