"""``Agent``: a supervised pykka actor whose commands are marked methods.

One ``Agent`` object is one *incarnation*: one thread, one run of
``on_start`` ... ``on_stop``. Its supervisor makes a new one on restart and
hands it the same ``AgentContext`` (mailbox, pause flag, restart count).

Failure semantics (the same for a tell and an ask):

- a handler that raises ``CommandError`` (or any ``MisterSmithError``) gives the
  caller an error reply; the agent lives on;
- any other exception, ``BaseException`` included, gives the caller an
  ``agent_failed`` error and ends the incarnation as a crash;
- a handler running longer than ``command_timeout_s`` is abandoned by the
  watchdog (a Python thread cannot be killed): the caller gets ``agent_failed``,
  the thread is counted as leaked until it returns, and the supervisor restarts
  the agent;
- exactly one exit signal per incarnation reaches the supervisor, whether the
  incarnation stopped, crashed, failed in ``on_start``/``on_stop``, was
  abandoned or was fenced (a durable agent whose newer activation exists: see
  ``_durable``). No exception ever escapes the actor thread, so pykka never stops
  every actor in the process.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

import pykka
from pykka import messages as pykka_messages

from mistersmith.errors import (
    AgentFailedError,
    InvalidPayloadError,
    MisterSmithError,
    PausedError,
    UnknownCommandError,
)

from ._builtins import BuiltinCommands
from ._command import CommandSpec, collect_commands
from ._context import AgentContext
from ._durable import DurableMethods, Durability
from ._state import BUILTIN_COMMANDS, AgentState
from ._kind_policy import KindPolicy
from ._mailbox import Exit, Letter, Order, ReplySlot, StopRequest, deliver

__all__ = ["Agent", "AgentState"]

logger = logging.getLogger("mistersmith.agent")

class Agent(KindPolicy, BuiltinCommands, DurableMethods, pykka.ThreadingActor):
    """Base class of every agent kind.

    Subclass it, mark command handlers with ``@command("name")`` and override
    the hooks you need. Read ``self.agent_id``, ``self.config``,
    ``self.lifecycle`` (where it is in its life: an ``AgentState``) and
    ``self.cancelled`` (an Event set when this incarnation is being stopped or
    was abandoned; long handlers should watch it).

    ``self.state`` is the agent's own data, a JSON-compatible dict. A durable
    agent (``durable = True`` on the kind, or ``durable=True`` in its spec)
    starts each incarnation from its last committed state, and every handler
    that returns and changed it commits it before the reply leaves; see
    ``commit``, ``effect`` and ``forget``. Other agents start from ``{}``.

    Threads: ``__init__`` runs in the supervisor's thread; every hook and
    handler runs in this incarnation's own thread.
    """

    kind: ClassVar[str | None] = None
    durable: ClassVar[bool] = False
    """Agents of this kind keep ``self.state`` (a spawn may still say ``durable=...``)."""
    use_daemon_thread: ClassVar[bool] = True
    _commands: ClassVar[dict[str, CommandSpec]] = {}

    @staticmethod
    def _create_actor_inbox() -> Any:
        # pykka builds an inbox in Actor.__init__; ours is the context's
        # lasting mailbox, swapped in right after, so build nothing here.
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._commands = collect_commands(cls, BUILTIN_COMMANDS)

    def __init__(self, context: AgentContext) -> None:
        super().__init__()
        self.context = context
        self.agent_id = context.agent_id
        self.config: Mapping[str, Any] = context.config
        self.mailbox = context.mailbox
        self._now = context.clock.now
        # pykka's own tell/ask must reach the same (lasting) mailbox.
        self.actor_inbox = context.mailbox  # type: ignore[assignment]
        self._actor_ref.actor_inbox = context.mailbox  # type: ignore[assignment]
        self.lifecycle = AgentState.STARTING
        self.state: dict[str, Any] = {}
        self._durable = Durability(context.agent_id, context.durable, self._emit_live) if context.durable else None
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._overdue_since: float | None = None  # the _busy_since the watchdog last reported
        self._busy_command: str | None = None
        self._reply: ReplySlot | None = None
        self._stop_exit: Exit | None = None
        self._stop_reply: ReplySlot | None = None
        self._exit_sent = False
        self._abandoned = False
        self._crash_info: tuple[Any, Any, Any] | None = None
        self.start_error: BaseException | None = None
        self.started = threading.Event()
        self.thread: threading.Thread | None = None

    # -- hooks -------------------------------------------------------------

    def on_start(self) -> None:
        """Set up, in this incarnation's thread, before the first message.

        If it raises, the start fails: the supervisor gets a crash exit and,
        when starting a tree, a ``StartError``. ``on_stop`` is not called.
        """

    def on_stop(self) -> None:
        """Clean up after a normal stop or a shutdown, in this incarnation's thread.

        If it raises, the exit becomes a crash with that exception as its reason.
        """

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Clean up after a crash, in this incarnation's thread, instead of ``on_stop``.

        If it raises, the exception is logged and the crash stands as it was.
        """

    # -- control from inside ---------------------------------------------------

    def exit(self, kind: str = "normal", detail: str = "", cause: BaseException | None = None) -> None:
        """End this incarnation after the current message, as OTP's ``exit/1``.

        ``kind`` is ``normal`` or ``shutdown``; the supervisor then applies the
        child's restart type (a permanent child is restarted even so).
        ``cause``: the exception behind it, if any (a supervisor giving up
        passes its child's last crash on).
        """
        if kind not in ("normal", "shutdown"):
            raise ValueError(f"kind={kind!r} is not allowed; use 'normal' or 'shutdown'")
        self._stop_exit = Exit(kind, detail, cause)

    # -- control from the supervisor (any thread) -------------------------------

    @property
    def abandoned(self) -> bool:
        """True once its supervisor gave up on this thread (it never reports an exit then)."""
        return self._abandoned

    def start_thread(self) -> None:
        """Register with pykka and start this incarnation's thread (once; the supervisor's thread).

        Returns at once: wait on ``started``, then read ``start_error``.
        """
        pykka.ActorRegistry.register(self.actor_ref)
        self._start_actor_loop()

    def request_stop(self, exit_: Exit) -> None:
        """Ask this incarnation to stop after its current message."""
        if self._stop_exit is None:
            self._stop_exit = exit_
        self.cancelled.set()
        self.mailbox.put(Letter(StopRequest(self)))

    def abandon(self) -> bool:
        """Give up on a thread that will not stop. False if it already exited."""
        with self._lock:
            if self._exit_sent:
                return False
            self._exit_sent = self._abandoned = True
        self.cancelled.set()
        self.context.counters.add("abandoned_threads")
        self.context.counters.add("leaked_threads")
        return True

    def overdue(self, now: float) -> bool:
        """True, once, when the running handler has passed ``command_timeout_s`` (any thread; no side
        effect but remembering that it said so)."""
        since, limit = self._busy_since, self.context.command_timeout_s
        if since is None or limit is None or now - since < limit or self._overdue_since == since:
            return False
        self._overdue_since = since
        return True

    def check_hung(self, now: float) -> bool:
        """Abandon and fail this incarnation if its handler ran past the timeout.

        Runs in the supervisor's thread (the watchdog sends it ``Hung``); emits ``failed``.
        """
        since, limit = self._busy_since, self.context.command_timeout_s
        if since is None or limit is None or now - since < limit:
            return False
        with self._lock:
            if self._busy_since is not since or self._exit_sent:
                return False
            reply, name = self._reply, self._busy_command
        if not self.abandon():
            return False
        detail = f"command {name!r} ran longer than command_timeout_s={limit}"
        logger.error("agent %s hung: %s", self.agent_id, detail, extra={"agent_id": self.agent_id})
        self.context.emit("failed", detail, {"command": name, "hung": True})
        deliver(reply, error=AgentFailedError(self.agent_id, detail))
        self.context.on_exit(self, Exit.crash(detail))
        return True

    # -- the actor thread ---------------------------------------------------

    def _emit_live(self, event_type: str, reason: str | None, data: dict[str, Any]) -> None:
        """Emit, unless this incarnation was abandoned (a newer one speaks for the agent now)."""
        if not self._abandoned:
            self.context.emit(event_type, reason, data)

    def _start_actor_loop(self) -> None:
        self.thread = threading.Thread(
            target=self._actor_loop, name=f"mistersmith-{self.agent_id}", daemon=True
        )
        self.thread.start()

    def _actor_loop(self) -> None:
        try:
            exit_ = self._lifecycle()
        except BaseException as exc:  # a bug of ours; never let it reach pykka
            logger.critical("internal error in agent %s", self.agent_id, exc_info=True)
            exit_ = Exit.crash(f"internal error: {exc!r}", exc)
        self._finish(exit_)

    def _lifecycle(self) -> Exit:
        ctx = self.context
        try:
            if self._durable is not None:
                self.state = self._durable.activate(restarting=ctx.restart_count > 0)
            self.on_start()
        except BaseException as exc:
            if self._abandoned:  # the supervisor gave up waiting; it is not ours to report
                return Exit.crash("abandoned")
            self.start_error = exc
            exit_ = Exit.crash(f"on_start raised {exc!r}", exc)
            ctx.emit("failed", exit_.detail, {"phase": "start"})
            self.lifecycle = AgentState.FAILED
            self.started.set()
            return exit_
        with self._lock:
            if self._abandoned:  # on_start outlived start_timeout_s: never serve the mailbox
                return Exit.crash("abandoned")
            self.lifecycle = AgentState.PAUSED if ctx.paused else AgentState.IDLE
        ctx.emit("restarted" if ctx.restart_count else "started", None, dict(ctx.start_data))
        self.started.set()
        exit_ = self._run()
        if self._abandoned:
            return exit_
        self.lifecycle = AgentState.STOPPING
        if exit_.is_crash:
            try:
                self.on_failure(*(self._crash_info or (None, exit_.exception, None)))
            except BaseException:
                logger.exception("on_failure of agent %s raised", self.agent_id)
            return exit_
        try:
            self.on_stop()
        except BaseException as exc:
            exit_ = Exit.crash(f"on_stop raised {exc!r}", exc)
            ctx.emit("failed", exit_.detail, {"phase": "stop"})
        return exit_

    def _run(self) -> Exit:
        get = self.mailbox.get
        while True:
            if self._stop_exit is not None:
                return self._stop_exit
            envelope = get()
            message = envelope.message
            if type(message) is Order:
                if message.deadline is not None:
                    self.mailbox.waiting.discard(envelope)
                    if message.late:  # its caller was told `restarting` while the agent backed off
                        continue
                exit_ = self._handle_command(message, envelope.reply_to)
            elif type(message) is StopRequest:
                continue
            elif isinstance(message, pykka_messages._ActorStop):
                self._stop_reply = envelope.reply_to
                return Exit.normal()
            else:
                exit_ = self._handle_other(envelope)
            if exit_ is not None:
                return exit_

    def _handle_command(self, cmd: Order, reply: ReplySlot | None) -> Exit | None:
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
        self._reply = reply
        self._busy_command = cmd.name
        self.lifecycle = AgentState.BUSY
        self._busy_since = self._now()
        return self._invoke(reply, cmd.name, getattr(self, spec.method), (), cmd.payload)

    def _handle_other(self, envelope: Letter) -> Exit | None:
        """pykka's own messages (proxy calls) and ``on_receive`` messages."""
        self._reply = envelope.reply_to
        self._busy_command = None
        self.lifecycle = AgentState.BUSY
        self._busy_since = self._now()
        return self._invoke(envelope.reply_to, None, self._handle_receive, (envelope.message,), {})

    def _invoke(
        self, reply: ReplySlot | None, command: str | None, fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Exit | None:
        """Run one handler; returns an ``Exit`` if it crashed the incarnation."""
        expected: MisterSmithError | None = None
        crash: BaseException | None = None
        result: Any = None
        try:
            result = fn(*args, **kwargs)
        except MisterSmithError as exc:
            expected = exc
        except BaseException as exc:
            crash = exc
            self._crash_info = sys.exc_info()
        with self._lock:
            if self._abandoned:
                return Exit.crash("abandoned")
            self._busy_since = None
            self._reply = None
            self.lifecycle = AgentState.PAUSED if self.context.paused else AgentState.IDLE
        if crash is None and self._durable is not None:
            expected, ended = self._settle_state(expected)  # durable before the reply leaves
            if ended is not None:
                deliver(reply, error=expected)
                return ended
        if crash is None:
            if expected is not None and reply is None:
                logger.info("agent %s: %s (no reply subject)", self.agent_id, expected)
            deliver(reply, result, expected)
            return None
        what = "message" if command is None else f"command {command!r}"
        exit_ = Exit.crash(f"{what} raised {crash!r}", crash)
        logger.error(
            "agent %s crashed: %s", self.agent_id, exit_.detail,
            exc_info=self._crash_info, extra={"agent_id": self.agent_id},
        )
        self.context.emit("failed", exit_.detail, {"command": command})
        error = AgentFailedError(self.agent_id, exit_.detail)
        error.__cause__ = crash
        deliver(reply, error=error)
        return exit_

    def _refuse(self, reply: ReplySlot | None, error: MisterSmithError) -> None:
        if reply is None:
            logger.warning("agent %s: %s (no reply subject)", self.agent_id, error)
        deliver(reply, error=error)

    def _finish(self, exit_: Exit) -> None:
        self.lifecycle = AgentState.FAILED if exit_.is_crash else AgentState.STOPPED
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        with self._lock:
            first, self._exit_sent = not self._exit_sent, True
        if self._abandoned:
            self.context.counters.add("leaked_threads", -1)
            return
        deliver(self._stop_reply)
        if first:
            self.context.on_exit(self, exit_)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.agent_id} {self.lifecycle}>"


Agent._commands = collect_commands(Agent, BUILTIN_COMMANDS)
