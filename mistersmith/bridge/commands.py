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
  Its headers (``mistersmith.headers``) may give the caller's deadline (never
  started once passed; the command is cancelled when it passes), ask for its
  progress (``MS-Stream: 1``: ``Runtime.astream``, each item published on the
  reply inbox as it comes), and name its correlation id, by which
  ``agents.<id>.control.cancel`` cancels it.
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
from mistersmith.errors import CommandTimeoutError, MisterSmithError, UnknownAgentError
from mistersmith.headers import (
    CORRELATION,
    DROPPED,
    KIND,
    KIND_PROGRESS,
    KIND_RESULT,
    STREAM,
    caller_timeout_s,
    encode_progress,
)
from mistersmith import tracing
from mistersmith.crossing import LoopStream
from mistersmith.runtime import Runtime

from . import subjects
from .counters import BridgeCounters
from .door import nats_acting
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
            payload, envelope = decode_command(msg.data)
        except (EnvelopeError, ValueError) as exc:
            await self._malformed(msg, exc)
            return
        if not msg.reply:
            with nats_acting(msg.headers):  # the audit trail's actor (mistersmith.audit)
                self._tell(agent_id, command, payload)
            return
        self.counters.add("requests_in")
        headers = msg.headers or {}
        timeout_s = caller_timeout_s(headers, self.ask_timeout_s)
        if timeout_s <= 0:  # its caller has given up already: never start it
            self.counters.add("expired_in")
            error = CommandTimeoutError(agent_id, command, 0.0, expired=True)
            await self._send(msg, Reply.from_exception(error), trace_headers(msg.headers))
            return
        cid = envelope.correlation_id if envelope is not None and envelope.correlation_id else headers.get(CORRELATION)
        stream = headers.get(STREAM) == "1"
        span = traced = None
        if tracing.enabled:  # the command's own span is made under this one (Runtime._enqueue)
            span = tracing.start(f"nats.receive {msg.subject}", parent=tracing.extract(headers),
                                 kind=tracing.SpanKind.CONSUMER)
            traced = tracing.attach(span)
        answer: Any
        try:  # queue now, in arrival order; a task awaits the answer
            with nats_acting(msg.headers):
                if stream:
                    answer = self.runtime.astream(agent_id, command, payload, timeout=timeout_s, correlation_id=cid,
                                                  maxsize=STREAM_BUFFER)
                else:
                    answer = self.runtime.ask_future(agent_id, command, payload, timeout=timeout_s,
                                                     correlation_id=cid)
        except Exception as exc:
            answer = asyncio.get_running_loop().create_future()
            answer.set_exception(exc)
        finally:
            tracing.detach(traced)
        if isinstance(answer, LoopStream):
            self.counters.add("streams_in")
            self._inflight.spawn(self._stream(msg, agent_id, command, answer, span))
        else:
            self._inflight.spawn(self._answer(msg, agent_id, command, answer, trace_headers(msg.headers), span))

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

    async def _stream(self, msg: Msg, agent_id: str, command: str, stream: LoopStream,
                      span: tracing.Span | None) -> None:
        """Each progress item on the reply inbox as it comes (``MS-Kind: progress``), then the answer
        (``MS-Kind: result``). An item that is not JSON-compatible is sent as its ``repr``."""
        trace = trace_headers(msg.headers) or {}
        progress_headers = {**trace, KIND: KIND_PROGRESS}
        publish, reply_to = self.wire.publish, msg.reply
        try:
            async for item in stream:
                if not self._serving():
                    break
                try:
                    body = encode_progress(item.data, item.done, item.total)
                except TypeError:
                    body = encode_progress(repr(item.data), item.done, item.total)
                if await publish(reply_to, body, headers=progress_headers):
                    self.counters.add("progress_out")
        except Exception:  # the command failed: ``result()`` raises it again, for the answer
            pass
        final = {**trace, KIND: KIND_RESULT}
        if stream.dropped:  # the reader was too slow for the agent: say how many items it missed
            final[DROPPED] = str(stream.dropped)
        await self._answer(msg, agent_id, command, stream.result(), final, span)

    async def _answer(self, msg: Msg, agent_id: str, command: str, answer: Awaitable[Any],
                      headers: dict[str, str] | None, span: tracing.Span | None = None) -> None:
        try:
            result = await answer
        except MisterSmithError as exc:
            if isinstance(exc, UnknownAgentError):
                self._forget_later(agent_id)
            if headers is not None:
                logger.info("request %r to %s failed: %s (trace %s)", command, agent_id, exc.code,
                            trace_id(headers.get("traceparent")), extra={"agent_id": agent_id})
            await self._send(msg, Reply.from_exception(exc), headers, span)
            return
        except asyncio.CancelledError:
            tracing.finish(span, "cancelled")
            raise
        except Exception as exc:  # a bug of ours: still answer, never crash the node
            logger.exception("request %r to %s: internal error", command, agent_id)
            await self._send(msg, Reply.from_exception(exc), headers, span)
            return
        await self._send(msg, Reply.success(result), headers, span)

    async def _send(self, msg: Msg, reply: Reply, headers: dict[str, str] | None,
                    span: tracing.Span | None = None) -> None:
        if not self._serving():  # the lease was lost while it ran (a frozen process woke up): say nothing
            self.counters.add("not_serving")
            tracing.finish(span, "not_serving")
            return
        if span is None:
            await self.wire.reply(msg, reply, headers)
            return
        sending = tracing.start("nats.reply", parent=tracing.context_of(span), kind=tracing.SpanKind.PRODUCER)
        await self.wire.reply(msg, reply, headers)
        tracing.finish(sending)
        tracing.finish(span, "ok" if reply.error is None else reply.error.code)

    def _forget_later(self, agent_id: str) -> None:
        """The agent is gone: stop answering for it (no-responders from now on)."""
        if agent_id in self._subs:
            self._inflight.spawn(self.unroute(agent_id))


STREAM_BUFFER = 65_536
"""Progress items a streaming request keeps while its inbox is slower than its agent (then the oldest go)."""


def _caller_timeout_s(headers: dict[str, str] | None, bound_s: float) -> float:
    """How long a control request's caller still waits (``mistersmith.headers``), at most ``bound_s``."""
    return max(caller_timeout_s(headers, bound_s), 0.0)
