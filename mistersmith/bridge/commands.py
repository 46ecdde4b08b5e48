"""Command routing: ``agents.{id}.commands.{cmd}`` to the hosted agent's mailbox.

For every agent it hosts, the node subscribes to ``agents.{id}.commands.*``
(and ``agents.{id}.control.*``, handled by the control plane). So a request for
an id that no node hosts fails fast with NATS's no-responders status, and a
request for an agent on another node is answered by that node.

- With a reply subject, a message is a request: the body is decoded
  (``mistersmith.envelope.decode_command``), the command is queued with
  ``Runtime.ask_future`` and the outcome is published on the reply subject as
  ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {...}}``.
  The request's ``traceparent``/``tracestate`` headers go back on the reply.
- Without one, it is a tell (``Runtime.send``): a refusal (unknown command,
  full mailbox...) is counted (``tells_refused``) and logged.
- A malformed body gets an error reply when it has a reply subject, and is
  counted (``invalid_in``) and logged when it has none.

Each request is awaited in its own task, so one slow agent never holds up
another; how many can wait at once is bounded by the agents' mailboxes (a full
one answers ``mailbox_full`` at once). Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.envelope import EnvelopeError, Reply, decode_command
from mistersmith.errors import MisterSmithError, UnknownAgentError
from mistersmith.runtime import Runtime

from . import subjects
from .counters import BridgeCounters
from .trace import trace_headers, trace_id
from .lifecycle import TaskSet, unsubscribe_quietly
from .wire import Wire

__all__ = ["CommandRouter"]

logger = logging.getLogger("mistersmith.bridge.commands")

_CLOSE_S = 5.0

MsgHandler = Callable[[Msg], Awaitable[None]]


class CommandRouter:
    """Subscribes per hosted agent and turns NATS messages into ``aask``/``send``."""

    def __init__(
        self,
        runtime: Runtime,
        wire: Wire,
        counters: BridgeCounters,
        *,
        control_handler: MsgHandler,
        ask_timeout_s: float,
        pending_msgs_limit: int,
        serving: Callable[[], bool] = lambda: True,
    ) -> None:
        self.runtime = runtime
        self._serving = serving  # False once this node's lease is lost: another node may run these agents
        self.wire = wire
        self.counters = counters
        self._control_handler = control_handler
        self.ask_timeout_s = ask_timeout_s
        self._pending_msgs_limit = pending_msgs_limit
        self._subs: dict[str, tuple[Subscription, Subscription]] = {}
        self._inflight = TaskSet()

    def routed(self) -> frozenset[str]:
        """The ids this node subscribes for now."""
        return frozenset(self._subs)

    async def route(self, agent_id: str) -> bool:
        """Subscribe for ``agent_id`` (idempotent). False if its id cannot be a subject token."""
        if agent_id in self._subs:
            return True
        if not subjects.is_token(agent_id):
            logger.error("agent id %r is not a NATS subject token; it is not reachable over NATS", agent_id)
            return False
        nc = self.wire.nc
        limit = self._pending_msgs_limit
        commands = await nc.subscribe(subjects.command_wildcard(agent_id), cb=self._on_command,
                                      pending_msgs_limit=limit)
        control = await nc.subscribe(subjects.agent_control_wildcard(agent_id), cb=self._control_handler,
                                     pending_msgs_limit=limit)
        if agent_id in self._subs:  # routed meanwhile by another task
            await commands.unsubscribe()
            await control.unsubscribe()
            return True
        self._subs[agent_id] = (commands, control)
        logger.debug("routing agent %s", agent_id, extra={"agent_id": agent_id})
        return True

    async def unroute(self, agent_id: str) -> None:
        """Unsubscribe for ``agent_id`` (idempotent): requests for it get no responders again."""
        subs = self._subs.pop(agent_id, None)
        if subs is None:
            return
        await unsubscribe_quietly(subs, f"agent {agent_id}")

    async def close(self) -> None:
        """Unsubscribe everything and abandon the requests still waiting (their callers time out)."""
        for agent_id in list(self._subs):
            await self.unroute(agent_id)
        await self._inflight.close(_CLOSE_S)

    # -- one message ---------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        if not self._serving():  # never answer for an agent another node may have taken over
            self.counters.add("not_serving")
            return
        try:
            agent_id, command = subjects.parse_command(msg.subject)
            payload, _envelope = decode_command(msg.data)
        except (EnvelopeError, ValueError) as exc:
            await self._malformed(msg, exc)
            return
        if not msg.reply:
            self._tell(agent_id, command, payload)
            return
        self.counters.add("requests_in")
        timeout_s = _caller_timeout_s(msg.headers, self.ask_timeout_s)
        try:  # queue now, in arrival order; a task awaits the answer
            answer = self.runtime.ask_future(agent_id, command, payload, timeout=timeout_s)
        except Exception as exc:
            answer = asyncio.get_running_loop().create_future()
            answer.set_exception(exc)
        self._inflight.spawn(self._answer(msg, agent_id, command, answer))

    async def _malformed(self, msg: Msg, exc: Exception) -> None:
        self.counters.add("invalid_in")
        if msg.reply:
            error = exc if isinstance(exc, MisterSmithError) else EnvelopeError(None, str(exc))
            await self.wire.reply(msg, Reply.from_exception(error), trace_headers(msg.headers))
        else:
            logger.warning("malformed command on %s (no reply subject): %s", msg.subject, exc)

    def _tell(self, agent_id: str, command: str, payload: dict[str, Any]) -> None:
        self.counters.add("tells_in")
        try:
            self.runtime.send(agent_id, command, payload)
        except MisterSmithError as exc:
            self.counters.add("tells_refused")
            logger.warning("tell %r to %s refused: %s", command, agent_id, exc, extra={"agent_id": agent_id})
            if isinstance(exc, UnknownAgentError):
                self._forget_later(agent_id)

    async def _answer(self, msg: Msg, agent_id: str, command: str, answer: asyncio.Future[Any]) -> None:
        headers = trace_headers(msg.headers)
        try:
            result = await answer
        except MisterSmithError as exc:
            if isinstance(exc, UnknownAgentError):
                self._forget_later(agent_id)
            if headers is not None:
                logger.info("request %r to %s failed: %s (trace %s)", command, agent_id, exc.code,
                            trace_id(headers.get("traceparent")), extra={"agent_id": agent_id})
            await self._send(msg, Reply.from_exception(exc), headers)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: still answer, never crash the node
            logger.exception("request %r to %s: internal error", command, agent_id)
            await self._send(msg, Reply.from_exception(exc), headers)
            return
        await self._send(msg, Reply.success(result), headers)

    async def _send(self, msg: Msg, reply: Reply, headers: dict[str, str] | None) -> None:
        if not self._serving():  # the lease was lost while it ran (a frozen process woke up): say nothing
            self.counters.add("not_serving")
            return
        await self.wire.reply(msg, reply, headers)

    def _forget_later(self, agent_id: str) -> None:
        """The agent is gone: stop answering for it (no-responders from now on)."""
        if agent_id in self._subs:
            self._inflight.spawn(self.unroute(agent_id))


TIMEOUT_HEADER = "Mistersmith-Timeout"
"""A request may say how long its caller waits (seconds); the bridge then waits no longer than that
(nor than ``ask_timeout_s``), so a restart that would outlast it is answered ``restarting`` at once."""


def _caller_timeout_s(headers: dict[str, str] | None, bound_s: float) -> float:
    raw = (headers or {}).get(TIMEOUT_HEADER)
    if raw is None:
        return bound_s
    try:
        value = float(raw)
    except ValueError:
        return bound_s
    return min(value, bound_s) if value > 0 else bound_s
