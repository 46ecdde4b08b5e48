"""``AgentClient``: command agents and the control plane from any asyncio program.

A thin layer over a nats-py connection that speaks the bridge's subjects and
reply shapes and turns every failure into one precise error:

- an error reply raises ``RemoteError`` with the node's ``code`` and ``message``;
- no node hosts the agent (NATS no-responders): ``RemoteError`` ``unknown_agent``;
- the connection is down (reconnecting or closed): ``NatsUnavailableError``,
  at once, instead of a request that waits out its timeout in a buffer;
- no answer in time: ``CommandTimeoutError``.

Any other NATS client works too: ``nats req agents.a1.commands.ping '{}'``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.envelope import RemoteError, decode_reply, encode_json
from mistersmith import tracing
from mistersmith.errors import CommandTimeoutError
from mistersmith.headers import CORRELATION, KIND, KIND_PROGRESS, STREAM, decode_progress, deadline_headers

from . import subjects
from .errors import NatsUnavailableError
from .trace import TRACEPARENT

__all__ = ["AgentClient", "NatsUnavailableError", "RemoteStream"]


class AgentClient:
    """Requests to agents and to the control plane, over an existing connection."""

    def __init__(self, nc: NATS, *, timeout_s: float = 10.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s

    def _check_connected(self, what: str) -> None:
        nc = self.nc
        if nc.is_connected:
            return
        state = "closed" if nc.is_closed else "reconnecting" if nc.is_reconnecting else "disconnected"
        raise NatsUnavailableError(f"{what} was not sent", state)

    async def _request(self, subject: str, body: bytes, timeout_s: float | None,
                       headers: Mapping[str, str] | None, missing: RemoteError, what: tuple[str, str]) -> Any:
        self._check_connected(f"request on {subject}")
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        try:
            msg = await self.nc.request(subject, body, timeout=timeout, headers=dict(headers) if headers else None)
        except NoRespondersError:
            raise missing from None
        except NatsTimeoutError:
            if not self.nc.is_connected:
                raise NatsUnavailableError(f"no answer came on {subject}", "down") from None
            raise CommandTimeoutError(what[0], what[1], timeout) from None
        except (ConnectionClosedError, OutboundBufferLimitError) as exc:
            raise NatsUnavailableError(f"request on {subject} was not sent", type(exc).__name__) from exc
        return decode_reply(msg.data).unwrap()

    def _command_headers(self, timeout_s: float, traceparent: str | None, correlation_id: str | None) -> dict[str, str]:
        headers = deadline_headers(timeout_s)
        if traceparent:
            headers[TRACEPARENT] = traceparent
        else:  # the caller's current span, when this program traces (mistersmith.tracing)
            tracing.inject(headers)
        if correlation_id:
            headers[CORRELATION] = correlation_id
        return headers

    async def request(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *,
        timeout_s: float | None = None, traceparent: str | None = None, correlation_id: str | None = None,
    ) -> Any:
        """Send ``command`` to ``agent_id`` and return its result. The node is told the deadline
        (``MS-Deadline``): it never starts the command once the caller gave up, and cancels it then.
        ``correlation_id``: what ``cancel`` names it by."""
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        missing = RemoteError("unknown_agent", f"no node hosts agent {agent_id!r} (NATS: no responders)")
        return await self._request(subjects.command(agent_id, command), encode_json(dict(payload or {})),
                                   timeout, self._command_headers(timeout, traceparent, correlation_id),
                                   missing, (agent_id, command))

    async def stream(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *,
        timeout_s: float | None = None, traceparent: str | None = None, correlation_id: str | None = None,
    ) -> RemoteStream:
        """Send ``command`` asking for its progress (``MS-Stream: 1``): ``async for item in stream``
        yields each progress item (``{"data", "done", "total"}``) as the agent reports it; then
        ``stream.result`` is the result (an error reply raises ``RemoteError`` from the loop).
        ``correlation_id`` (default: a fresh one, ``stream.correlation_id``) is what ``cancel`` names."""
        self._check_connected(f"stream {command!r} to {agent_id!r}")
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        cid = correlation_id or uuid.uuid4().hex
        headers = self._command_headers(timeout, traceparent, cid)
        headers[STREAM] = "1"
        inbox = self.nc.new_inbox()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sub = await self.nc.subscribe(inbox, cb=queue.put)
        try:
            await self.nc.publish(subjects.command(agent_id, command), encode_json(dict(payload or {})),
                                  reply=inbox, headers=headers)
        except BaseException:
            await sub.unsubscribe()
            raise
        return RemoteStream(sub, queue, timeout, cid, (agent_id, command))

    async def cancel(self, agent_id: str, correlation_id: str, *, timeout_s: float | None = None) -> bool:
        """``agents.<id>.control.cancel``: cancel the command sent with ``correlation_id``; True if one was
        queued or running (its caller gets ``cancelled``), False if it had finished."""
        missing = RemoteError("unknown_agent", f"no node hosts agent {agent_id!r} (NATS: no responders)")
        result = await self._request(subjects.agent_control(agent_id, "cancel"),
                                     encode_json({"correlation_id": correlation_id}), timeout_s, None, missing,
                                     (agent_id, "cancel"))
        return bool(result["cancelled"])

    async def tell(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None) -> None:
        """Fire and forget: no reply, no error from the agent (refusals are counted on its node)."""
        self._check_connected(f"tell {command!r} to {agent_id!r}")
        await self.nc.publish(subjects.command(agent_id, command), encode_json(dict(payload or {})))

    async def control(self, action: str, payload: Mapping[str, Any] | None = None, *,
                      timeout_s: float | None = None) -> Any:
        """A ``system.control.{action}`` request; its result."""
        missing = RemoteError("unavailable", "no MisterSmith node answers system.control on this NATS")
        return await self._request(subjects.control(action), encode_json(dict(payload or {})),
                                   timeout_s, None, missing, ("system.control", action))

    async def spawn(self, kind: str, agent_id: str | None = None, *, config: Mapping[str, Any] | None = None,
                    node: str | None = None, restart: str | None = None, supervisor: str | None = None,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """``system.control.spawn``: ``{"agent_id", "node"}`` of the new agent."""
        payload: dict[str, Any] = {"kind": kind}
        for key, value in (("agent_id", agent_id), ("config", config), ("node", node), ("restart", restart),
                           ("supervisor", supervisor)):
            if value is not None:
                payload[key] = dict(value) if isinstance(value, Mapping) else value
        result: dict[str, Any] = await self.control("spawn", payload, timeout_s=timeout_s)
        return result

    async def query(self, *, kind: str | None = None, command: str | None = None, node: str | None = None,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """``agents.discovery.query``: ``{"agents", "nodes", "missing"}``."""
        payload = {k: v for k, v in (("kind", kind), ("command", command), ("node", node)) if v is not None}
        missing = RemoteError("unavailable", "no MisterSmith node answers agents.discovery.query on this NATS")
        result: dict[str, Any] = await self._request(subjects.QUERY, encode_json(payload), timeout_s, None,
                                                     missing, ("agents.discovery", "query"))
        return result


class RemoteStream:
    """A streaming request's answers: its progress items, then its result (``AgentClient.stream``)."""

    def __init__(self, sub: Any, queue: asyncio.Queue[Any], timeout_s: float, correlation_id: str,
                 what: tuple[str, str]) -> None:
        self._sub = sub
        self._queue = queue
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._timeout_s = timeout_s
        self._what = what
        self.correlation_id = correlation_id
        self.result: Any = None
        self.done = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._items()

    async def _items(self) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        try:
            while True:
                remaining = self._deadline - loop.time()
                try:
                    msg = await asyncio.wait_for(self._queue.get(), max(remaining, 0.0))
                except TimeoutError:
                    raise CommandTimeoutError(self._what[0], self._what[1], self._timeout_s) from None
                if msg.headers and msg.headers.get(KIND) == KIND_PROGRESS:
                    yield decode_progress(msg.data)
                    continue
                if not msg.data and msg.headers and msg.headers.get("Status") == "503":
                    raise RemoteError("unknown_agent", f"no node hosts agent {self._what[0]!r} (NATS: no responders)")
                self.done = True
                self.result = decode_reply(msg.data).unwrap()
                return
        finally:
            await self._sub.unsubscribe()

    async def wait(self) -> Any:
        """Read to the end, dropping progress; the result."""
        async for _ in self:
            pass
        return self.result
