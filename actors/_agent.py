"""``Agent``: a supervised pykka actor whose commands are marked methods.

One ``Agent`` object is one *incarnation*: one thread, one run of
``on_start`` ... ``on_stop``. Its supervisor makes a new one on restart and
hands it the same ``AgentContext`` (mailbox, pause flag, restart count).

Failure semantics (the same for a tell and an ask):

- a handler that raises ``CommandError`` (or any ``MisterSmithError``) gives the
  caller an error reply; the agent lives on;
- any other exception, ``BaseException`` included, gives the caller an
  ``agent_failed`` error and ends the incarnation as a crash;
- a handler running longer than ``command_timeout_s`` gives the caller
  ``agent_failed`` and the supervisor restarts the agent. An async handler is
  cancelled (it sees ``CancelledError``; its thread ends normally); a sync one
  is abandoned by the watchdog (a Python thread cannot be killed) and its thread
  is counted as leaked until it returns;
- a stop request cancels a running async command (a sync one sees
  ``self.cancelled``); its caller gets what a caller of the stopped agent gets
  (``unknown_agent``, ``closed`` while the runtime shuts down, ``restarting``
  when the stop is for a restart);
- exactly one exit signal per incarnation reaches the supervisor, whether the
  incarnation stopped, crashed, failed in ``on_start``/``on_stop``, was
  abandoned or was fenced (a durable agent whose newer activation exists: see
  ``_durable``). No exception ever escapes the actor thread, so pykka never stops
  every actor in the process.

Threads and the boundary: every hook and handler runs in the incarnation's own
thread; ``async def`` ones run on the incarnation's own event loop, in that
thread (``_aio.IncarnationLoop``), never on the node's. The one call from
another thread into that loop is ``IncarnationLoop.cancel_threadsafe``
(``call_soon_threadsafe(task.cancel)``), made by ``request_stop``, ``abandon``
and ``check_hung``; ``mistersmith.crossing`` stays the only module that
crosses to and from the node's loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, ClassVar

import pykka
from pykka import messages as pykka_messages

from mistersmith import tracing

from ._aio import IncarnationLoop
from ._builtins import BuiltinCommands
from ._cancel import CommandCancel, untrack
from ._commands_run import CommandRunning
from ._concurrent import ConcurrentRun
from ._command import CommandSpec, collect_commands
from ._context import AgentContext
from ._durable import DurableMethods, Durability
from ._handlers import HandlerMethods, ProgressSink
from ._resilience import ResilienceMethods
from ._oversight import Oversight
from ._pykka import ActorBase
from ._state import BUILTIN_COMMANDS, AgentState
from ._kind_policy import KindPolicy
from ._mailbox import Exit, Order, ReplySlot, StopRequest, deliver

__all__ = ["Agent", "AgentState"]

logger = logging.getLogger("mistersmith.agent")

class Agent(KindPolicy, BuiltinCommands, DurableMethods, HandlerMethods, ResilienceMethods, CommandRunning,
            CommandCancel, ConcurrentRun, Oversight, ActorBase):
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
    ``commit``, ``effect``, ``aeffect`` and ``forget``. Other agents start from ``{}``.

    Handlers and hooks may be ``async def``; a handler may be a generator
    (each yielded item is progress); any handler may call ``self.progress(...)``
    (see ``_handlers``). ``self.breaker(name)`` and ``self.retry()`` / ``self.aretry()`` guard calls to
    its dependencies (see ``_resilience``).

    Threads: ``__init__`` runs in the supervisor's thread; every hook and
    handler runs in this incarnation's own thread, ``async def`` ones on this
    incarnation's own event loop there. Cancelling them is the one call from
    another thread into that loop (``IncarnationLoop.cancel_threadsafe``).
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
        self.actor_inbox = context.mailbox
        self._actor_ref.actor_inbox = context.mailbox  # type: ignore[assignment]
        self.lifecycle = AgentState.STARTING
        self.state: dict[str, Any] = {}
        self._durable = Durability(context.agent_id, context.durable, self._emit_live) if context.durable else None
        self.cancelled = threading.Event()
        self._aio = IncarnationLoop(f"mistersmith-{context.agent_id}")
        self._progress_sink: ProgressSink | None = None
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._overdue_since: float | None = None  # the _busy_since the watchdog last reported
        self._idle_seen: float | None = None  # the _progress_at the watchdog last reported as idle
        self._busy_command: str | None = None
        self._order: Order | None = None  # the command running now (``_cancel``)
        self._progress_at: float | None = None  # when the running command last reported progress
        self._reply: ReplySlot | None = None
        self._stop_exit: Exit | None = None
        self._stop_reply: ReplySlot | None = None
        self._stop_restarting: bool | None = None  # set by request_stop: is the stop for a restart?
        self._busy_async = False  # the running command is an async handler (it can be cancelled for real)
        self._exit_sent = False
        self._abandoned = False  # its supervisor gave up on it: it never speaks for the agent again
        self._leaked = False  # counted in leaked_threads until its thread ends
        self._finished = False
        self._crash_info: tuple[Any, Any, Any] | None = None
        self.start_error: BaseException | None = None
        self.started = threading.Event()
        self.thread: threading.Thread | None = None

    # -- hooks -------------------------------------------------------------

    def on_start(self) -> Awaitable[None] | None:
        """Set up, in this incarnation's thread, before the first message (``async def`` is fine).

        If it raises, the start fails: the supervisor gets a crash exit and,
        when starting a tree, a ``StartError``. ``on_stop`` is not called.
        """
        return None

    def on_stop(self) -> Awaitable[None] | None:
        """Clean up after a normal stop or a shutdown, in this incarnation's thread (``async def`` is fine).

        If it raises, the exit becomes a crash with that exception as its reason.
        """
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Awaitable[None] | None:
        """Clean up after a crash, in this incarnation's thread, instead of ``on_stop`` (``async def`` is fine).

        If it raises, the exception is logged and the crash stands as it was.
        """
        return None

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

    # -- control from the supervisor (the rest: ``Oversight``) -----------------------

    def start_thread(self) -> None:
        """Register with pykka and start this incarnation's thread (once; the supervisor's thread).

        Returns at once: wait on ``started``, then read ``start_error``.
        """
        pykka.ActorRegistry.register(self.actor_ref)
        self._start_actor_loop()

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
                reset, ctx.reset_state = ctx.reset_state, False
                self.state = self._durable.activate(restarting=ctx.restart_count > 0, reset=reset)
            self._run_hook(self.on_start)
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
        with tracing.resumed(ctx.cause):  # a restart after a crash joins that crash's trace
            ctx.emit("restarted" if ctx.restart_count else "started", None, dict(ctx.start_data))
        ctx.cause = None
        self.started.set()
        exit_ = self._run() if self.concurrency <= 1 else self._run_concurrently()
        if self._abandoned:
            return exit_
        self.lifecycle = AgentState.STOPPING
        if exit_.is_crash:
            try:
                self._run_hook(self.on_failure, *(self._crash_info or (None, exit_.exception, None)))
            except BaseException:
                logger.exception("on_failure of agent %s raised", self.agent_id)
            return exit_
        try:
            self._run_hook(self.on_stop)
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
                if not self._admit(envelope, message):
                    continue
                exit_ = self._handle_command(message, envelope.reply_to)
                if message.correlation_id is not None:
                    untrack(self.mailbox, envelope)
            elif type(message) is StopRequest:
                continue
            elif isinstance(message, pykka_messages._ActorStop):
                self._stop_reply = envelope.reply_to
                return Exit.normal()
            else:
                exit_ = self._handle_other(envelope)
            if exit_ is not None:
                return exit_

    def _finish(self, exit_: Exit) -> None:
        self._aio.close()
        self.lifecycle = AgentState.FAILED if exit_.is_crash else AgentState.STOPPED
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        with self._lock:
            first, self._exit_sent = not self._exit_sent, True
            self._finished = True
            leaked = self._leaked
        if self._abandoned:
            if leaked:
                self.context.counters.add("leaked_threads", -1)
            return
        deliver(self._stop_reply)
        if first:
            self.context.on_exit(self, exit_)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.agent_id} {self.lifecycle}>"


Agent._commands = collect_commands(Agent, BUILTIN_COMMANDS)
