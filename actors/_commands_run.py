"""``CommandRunning``: one command, from the mailbox to its answer, in the incarnation's thread.

``_admit`` drops a command whose caller was told ``restarting``, gave up or
cancelled it; ``_command_spec`` refuses an unknown command, a paused agent or
a bad payload; ``_handle_command`` runs the handler with its ``agent.command``
span current (``mistersmith.tracing``); ``_settle`` turns its outcome into the
answer (a durable agent commits first) or, for a crash, the incarnation's
``Exit``. The failure rules are ``Agent``'s (see its module).
"""

from __future__ import annotations

import logging
import sys
import threading
from asyncio import CancelledError
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from mistersmith import tracing
from mistersmith.errors import (
    AgentFailedError,
    CommandTimeoutError,
    InvalidPayloadError,
    MisterSmithError,
    PausedError,
    RestartingError,
    UnknownCommandError,
)

from ._cancel import untrack
from ._command import ASYNC, ASYNC_GENERATOR, SYNC, CommandSpec
from ._context import AgentContext
from ._durable import Durability
from ._handlers import ProgressSink
from ._mailbox import Exit, Letter, Mailbox, Order, ReplySlot, deliver
from ._state import AgentState

__all__ = ["CommandRunning"]

logger = logging.getLogger("mistersmith.agent")


class CommandRunning:
    """A mixin of ``Agent``: run one command and answer its caller (this incarnation's thread)."""

    if TYPE_CHECKING:
        agent_id: str
        context: AgentContext
        mailbox: Mailbox
        lifecycle: AgentState
        cancelled: threading.Event
        _commands: ClassVar[dict[str, CommandSpec]]
        _now: Callable[[], float]
        _lock: threading.Lock
        _durable: Durability | None
        _reply: ReplySlot | None
        _busy_command: str | None
        _busy_async: bool
        _busy_since: float | None
        _progress_at: float | None
        _progress_sink: ProgressSink | None
        _abandoned: bool
        _crash_info: Any
        _stop_restarting: bool | None

        def _begin_order(self, order: Order) -> bool: ...
        def _end_order(self) -> Order | None: ...
        def _call_handler(self, fn: Callable[..., Any], shape: str, kwargs: Mapping[str, Any]) -> Any: ...
        def _handle_receive(self, message: Any) -> Any: ...
        def _settle_state(self, expected: MisterSmithError | None) -> tuple[MisterSmithError | None, Exit | None]: ...

    def _admit(self, envelope: Letter, order: Order) -> bool:
        """Whether a command taken from the mailbox is still to run: not when its caller was told
        ``restarting`` during a backoff, has given up (its deadline passed) or cancelled it."""
        if order.deadline is not None:
            self.mailbox.waiting.discard(envelope)
            if order.late:  # its caller was told `restarting` while the agent backed off
                tracing.finish(order.trace, "restarting")
                return False
            if order.deadline <= self._now():  # its caller gave up: never start it
                deliver(envelope.reply_to, error=CommandTimeoutError(self.agent_id, order.name, 0.0))
                order.stopped = TimeoutError()
        if order.stopped is not None:  # cancelled while it was queued; its caller knows
            untrack(self.mailbox, envelope)
            tracing.finish(order.trace, "cancelled" if isinstance(order.stopped, MisterSmithError) else "timeout")
            return False
        return True

    def _command_spec(self, cmd: Order, reply: ReplySlot | None) -> CommandSpec | None:
        """The handler of ``cmd``, or None once its caller was refused (unknown, paused, bad payload)."""
        spec = self._commands.get(cmd.name)
        if spec is None:
            self._refuse(reply, UnknownCommandError(self.agent_id, cmd.name, sorted(self._commands)))
            return None
        if self.context.paused and not spec.builtin:
            self._refuse(reply, PausedError(self.agent_id, cmd.name))
            return None
        problem = spec.check(cmd.payload)
        if problem is not None:
            self._refuse(reply, InvalidPayloadError(cmd.name, problem))
            return None
        return spec

    def _handle_command(self, cmd: Order, reply: ReplySlot | None) -> Exit | None:
        if cmd.trace is not None:  # its span is current while it runs: the handler's own spans nest under it
            token = tracing.attach(cmd.trace)
            cmd.trace.add_event("started")
            try:
                return self._handle_command_now(cmd, reply)
            finally:
                tracing.detach(token)
        return self._handle_command_now(cmd, reply)

    def _handle_command_now(self, cmd: Order, reply: ReplySlot | None) -> Exit | None:
        spec = self._command_spec(cmd, reply)
        if spec is None or not self._begin_order(cmd):
            tracing.finish(cmd.trace, "refused")
            return None
        self._reply = reply
        self._busy_command = cmd.name
        self._busy_async = spec.shape in (ASYNC, ASYNC_GENERATOR)
        self._progress_sink = None if reply is None else getattr(reply, "progress", None)
        self.lifecycle = AgentState.BUSY
        self._busy_since = self._progress_at = self._now()
        return self._invoke(reply, cmd.name, getattr(self, spec.method), spec.shape, cmd.payload)

    def _handle_other(self, envelope: Letter) -> Exit | None:
        """pykka's own messages (proxy calls) and ``on_receive`` messages."""
        self._reply = envelope.reply_to
        self._busy_command = None
        self._busy_async = False
        self.lifecycle = AgentState.BUSY
        self._busy_since = self._now()
        return self._invoke(envelope.reply_to, None, lambda: self._handle_receive(envelope.message), SYNC, {})

    def _invoke(
        self, reply: ReplySlot | None, command: str | None, fn: Any, shape: str, kwargs: Mapping[str, Any]
    ) -> Exit | None:
        """Run one handler; returns an ``Exit`` if it crashed the incarnation."""
        expected: MisterSmithError | None = None
        crash: BaseException | None = None
        result: Any = None
        try:
            result = self._call_handler(fn, shape, kwargs)
        except MisterSmithError as exc:
            expected = exc
        except BaseException as exc:
            crash = exc
            self._crash_info = sys.exc_info()
        with self._lock:
            if self._abandoned:
                return Exit.crash("abandoned")
            self._busy_since = None
            self._reply = self._progress_sink = None
            self.lifecycle = AgentState.PAUSED if self.context.paused else AgentState.IDLE
            order = self._end_order()
        return self._settle(reply, command, order, result, expected, crash)

    def _settle(self, reply: ReplySlot | None, command: str | None, order: Order | None, result: Any,
                expected: MisterSmithError | None, crash: BaseException | None) -> Exit | None:
        """Answer a handler's outcome (a durable agent commits first); an ``Exit`` if it crashed."""
        exit_, answered = self._settle_outcome(reply, command, order, result, expected, crash)
        if order is not None and order.trace is not None:
            if exit_ is not None:
                tracing.finish(order.trace, exit_.kind, exit_.exception)
            else:
                tracing.finish(order.trace, answered.code if answered is not None else "ok", answered)
        return exit_

    def _settle_outcome(
        self, reply: ReplySlot | None, command: str | None, order: Order | None, result: Any,
        expected: MisterSmithError | None, crash: BaseException | None,
    ) -> tuple[Exit | None, MisterSmithError | None]:
        """``_settle`` but for the span: the exit, and the error its caller was answered with (None: ok)."""
        if crash is not None and isinstance(crash, CancelledError):
            if self._stop_restarting is not None:  # cancelled by a stop: the incarnation stops
                expected, crash, self._crash_info = self._stopped_error(), None, None
            elif order is not None and order.stopped is not None:  # this command was cancelled: the agent lives
                crash = self._crash_info = None
        if crash is None and order is not None and isinstance(order.stopped, MisterSmithError):
            expected = order.stopped  # its caller was told it did not finish: so it changed nothing
        if crash is None and self._durable is not None:
            expected, ended = self._settle_state(expected)  # durable before the reply leaves
            if ended is not None:
                deliver(reply, error=expected)
                return ended, expected
        if crash is None:
            if expected is not None and reply is None:
                logger.info("agent %s: %s (no reply subject)", self.agent_id, expected)
            deliver(reply, result, expected)
            return None, expected
        what = "message" if command is None else f"command {command!r}"
        exit_ = Exit.crash(f"{what} raised {crash!r}", crash, tracing.current_context())
        logger.error(
            "agent %s crashed: %s", self.agent_id, exit_.detail,
            exc_info=self._crash_info, extra={"agent_id": self.agent_id},
        )
        self.context.emit("failed", exit_.detail, {"command": command})
        error = AgentFailedError(self.agent_id, exit_.detail)
        error.__cause__ = crash
        deliver(reply, error=error)
        return exit_, error

    def _stopped_error(self) -> MisterSmithError:
        """What the caller of a command cancelled by a stop gets: what callers of a stopped agent get."""
        if self._stop_restarting:
            return RestartingError(self.agent_id, None)
        error = self.context.gone(self.agent_id)
        return error if isinstance(error, MisterSmithError) else AgentFailedError(self.agent_id, str(error))

    def _refuse(self, reply: ReplySlot | None, error: MisterSmithError) -> None:
        if reply is None:
            logger.warning("agent %s: %s (no reply subject)", self.agent_id, error)
        deliver(reply, error=error)

