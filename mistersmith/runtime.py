"""``Runtime``: the facade a Python program embeds, sync or asyncio.

A Runtime owns one supervision tree (root supervisor ``root``), its event bus
and the node's counters. Blocking methods (``ask``, ``spawn``, ``stop``,
``close``...) refuse to run on an event loop thread and name their awaitable
twin (``aask``, ``aspawn``...); ``send`` never blocks and works anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any

from mistersmith.actors import Agent, Command, EchoAgent, Envelope, Exit, ThreadReply
from mistersmith.clock import Clock, MonotonicClock
from mistersmith.crossing import EventStream, LoopReply, forbid_blocking, run_in_thread
from mistersmith.errors import (
    CommandTimeoutError,
    FatalError,
    InvalidPayloadError,
    MailboxFullError,
    RestartingError,
    RuntimeClosedError,
    SpecError,
    StartError,
    UnknownAgentError,
)
from mistersmith.recovery import RecoveryPlan, RecoveryReport, execute
from mistersmith.supervisors import (
    Backoff,
    ChildSpec,
    ChildStatus,
    EventBus,
    EventSink,
    MemorySink,
    Request,
    Restart,
    RestartChild,
    StartChild,
    Subscription,
    SupervisionEvent,
    Supervisor,
    SupervisorSpec,
    System,
    TerminateChild,
    check_id,
    tolerant_root,
)

__all__ = ["Runtime"]

logger = logging.getLogger("mistersmith.runtime")

_PROCESS_REFUSED = (
    "the process kind runs any program its spawner names, so a Runtime does not register it; register it in "
    "code (Runtime(kinds={'process': ProcessAgent})), or a named kind (ProcessKind) whose command you choose"
)
_CALL_MARGIN_S = 5.0  # added to a child's own bound when waiting for its supervisor
_BACKING_OFF = ChildStatus.BACKING_OFF  # read on the hot path of send/ask


class Runtime:
    """One node's supervision tree and the calls to reach its agents.

    ``root`` is the root supervisor's spec (default: ``tolerant_root()``, the
    same as a node's: ``one_for_one``, 1000 restarts a minute, and restart
    backoff from 0.1 s to 30 s for its agents, so crashing agents cannot stop
    the runtime; ``SupervisorSpec("root")`` is OTP's exact 1 restart in 5 s);
    its static children start before the constructor returns.
    ``clock`` is injectable (``FakeClock`` in tests). ``sinks`` receive every
    supervision event, after the built-in in-memory one (``runtime.events``).
    ``max_agents`` caps the agents hosted at once (``PoolFullError`` past it);
    a stopped agent frees its slot, a restarting one keeps it; a kind may
    have a limit of its own (``Agent.pool_size``: 10 for process kinds).
    ``max_agents_setting`` is how the error tells a user to raise it.

    ``kinds`` are registered after the built-in ``echo`` (unless
    ``default_kinds=False``). The ``process`` kind (``ProcessAgent``) runs
    whatever program its spawner names, so it is never registered by
    default: register it in code, or declare named kinds (``ProcessKind``).
    ``refused_kinds`` maps a kind name that is not registered to what a
    spawn of it is told (``invalid_spec``).
    """

    def __init__(
        self,
        *,
        node_id: str | None = None,
        root: SupervisorSpec | None = None,
        kinds: Mapping[str, type[Agent]] | None = None,
        clock: Clock | None = None,
        sinks: Collection[EventSink] = (),
        events_kept: int = 10_000,
        watchdog_interval_s: float = 0.1,
        max_agents: int | None = None,
        default_kinds: bool = True,
        refused_kinds: Mapping[str, str] | None = None,
        max_agents_setting: str = "max_agents",
    ) -> None:
        self.node_id = check_id(node_id or f"node-{uuid.uuid4().hex[:12]}", "node_id")
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.bus = EventBus(self.node_id)
        self.events = MemorySink(events_kept)
        self.bus.add_sink(self.events)
        for sink in sinks:
            self.bus.add_sink(sink)
        self.system: System[Supervisor] = System(
            self.node_id, self.clock, self.bus, watchdog_interval_s=watchdog_interval_s, max_agents=max_agents,
            max_agents_setting=max_agents_setting,
        )
        self._agents = self.system.agents
        if default_kinds:
            self.system.register("echo", EchoAgent)
        self.refused_kinds: dict[str, str] = {"process": _PROCESS_REFUSED, **(refused_kinds or {})}
        for name, cls in (kinds or {}).items():
            self.register(name, cls)
        self.fatal_error: FatalError | None = None
        self.recovery: RecoveryReport | None = None  # the last ``recover``'s report (``/health`` reads it)
        self._closing = False
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        spec = root if root is not None else tolerant_root()
        try:
            self._root = Supervisor.start_root(self.system, spec, self._root_exited)
        except StartError:
            self._shutdown_services()
            raise
        self.system.start_watchdog()

    # -- kinds and spawning -------------------------------------------------------

    def register(self, kind: str, cls: type[Agent]) -> None:
        """Make ``cls`` spawnable under the name ``kind``."""
        check_id(kind, "kind")
        self.system.register(kind, cls)

    def kinds(self) -> dict[str, dict[str, Any]]:
        """Every registered kind: the commands its agents answer, with their parameters.

        ``{kind: {"commands": {cmd: {"params": ..., "more_params": bool}}}}``,
        plus ``"process"`` (its command and what a spawn may override) for a
        named process kind. Reads no agent: a busy one is described too.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, cls in sorted(self.system.kinds.items()):
            info: dict[str, Any] = {"commands": {c: spec.describe() for c, spec in sorted(cls._commands.items())}}
            process_kind = getattr(cls, "process_kind", None)
            if process_kind is not None:
                info["process"] = process_kind.describe()
            out[name] = info
        return out

    def _spawn_request(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None,
        config: Mapping[str, Any] | None,
        restart: Restart | None,
        supervisor: str,
        options: dict[str, Any],
    ) -> tuple[Supervisor, ChildSpec]:
        self._check_open()
        sup = self.system.supervisor(supervisor)
        template = sup.spec.template
        if template is not None:
            if kind is not None and kind != template.kind:
                raise SpecError(agent_id, "kind", kind, f"supervisor {supervisor!r} only starts {template.kind_name!r}")
            kind = template.kind
        if kind is None:
            raise SpecError(agent_id, "kind", None, "name a registered kind")
        name = kind if isinstance(kind, str) else (kind.kind or kind.__name__)
        if isinstance(kind, str) and kind not in self.system.kinds:
            known = ", ".join(sorted(self.system.kinds)) or "none"
            raise SpecError(agent_id, "kind", kind, self.refused_kinds.get(kind, f"use a registered kind ({known})"))
        if agent_id is None:
            agent_id = f"{name}-{uuid.uuid4().hex[:8]}"
        fields: dict[str, Any] = {"id": agent_id, "kind": kind, **options}
        if config is not None:
            fields["config"] = config
        if restart is not None:
            fields["restart"] = restart
        if template is not None:
            spec = dataclasses.replace(template, **fields)
        else:
            spec = ChildSpec(**fields)
        cls = self.system.resolve(spec)
        cls.check_config(spec.config, spec.id)  # a bad config fails here, before the supervisor
        if "command_timeout_s" not in options:
            own = cls.command_timeout_for(spec.config)
            if own is not None and spec.command_timeout_s is not None and own > spec.command_timeout_s:
                spec = dataclasses.replace(spec, command_timeout_s=own)
        return sup, spec

    def spawn(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        restart: Restart | None = None,
        supervisor: str = "root",
        *,
        backoff: Backoff | None = None,
        **options: Any,
    ) -> str:
        """Start an agent under ``supervisor`` and return its id once ``on_start`` is done.

        ``options`` are further ``ChildSpec`` fields (``command_timeout_s``,
        ``mailbox_size``, ``shutdown_s``, ``stash_limit``...). Raises
        ``StartError``, ``AgentExistsError`` or ``SpecError``.
        """
        forbid_blocking("Runtime.spawn()", "await runtime.aspawn(...)")
        if backoff is not None:
            options["backoff"] = backoff
        sup, spec = self._spawn_request(kind, agent_id, config, restart, supervisor, options)
        info = self._call(sup, StartChild(spec), spec.start_timeout_s)
        return str(info["id"])

    async def aspawn(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        restart: Restart | None = None,
        supervisor: str = "root",
        *,
        backoff: Backoff | None = None,
        **options: Any,
    ) -> str:
        """``spawn`` for asyncio programs."""
        if backoff is not None:
            options["backoff"] = backoff
        sup, spec = self._spawn_request(kind, agent_id, config, restart, supervisor, options)
        info = await self._acall(sup, StartChild(spec), spec.start_timeout_s)
        return str(info["id"])

    def add_supervisor(self, spec: SupervisorSpec, parent: str = "root") -> str:
        """Start a supervisor (and its static children) under ``parent``; returns its path."""
        forbid_blocking("Runtime.add_supervisor()", "await runtime.aadd_supervisor(...)")
        self._check_open()
        sup = self.system.supervisor(parent)
        self._call(sup, StartChild(spec), spec.start_timeout_s * (1 + len(spec.children)))
        return f"{sup.path}/{spec.id}"

    async def aadd_supervisor(self, spec: SupervisorSpec, parent: str = "root") -> str:
        """``add_supervisor`` for asyncio programs."""
        self._check_open()
        sup = self.system.supervisor(parent)
        await self._acall(sup, StartChild(spec), spec.start_timeout_s * (1 + len(spec.children)))
        return f"{sup.path}/{spec.id}"

    # -- commands --------------------------------------------------------------

    def _enqueue(self, agent_id: str, command: str, payload: Any, reply: Any, timeout_s: float | None = None) -> None:
        # The hot path of send/ask: keep it lean.
        if self.system.closing:  # closing, or the root gave up: nothing queued now would be handled
            raise self._closed_error()
        child = self._agents.get(agent_id)
        mailbox = child.context.mailbox if child is not None else None
        if child is None or mailbox is None or mailbox.closed:
            self._dead_letter(agent_id, command, "no such agent")
            raise self._unknown(agent_id)
        if payload is None:
            payload = {}
        elif type(payload) is not dict and not isinstance(payload, Mapping):
            raise InvalidPayloadError(command, f"payload must be a JSON object, not {type(payload).__name__}")
        deadline = None if timeout_s is None else self.clock.now() + timeout_s
        if child.status is _BACKING_OFF:
            # During a backoff a command waits for the next incarnation (the stash) while the
            # stash has room and the restart comes before the caller's deadline; else `restarting`.
            retry = None if child.restart_at is None else max(0.0, child.restart_at - self.clock.now())
            if mailbox.depth() >= getattr(child.spec, "stash_limit", 0) or (
                    timeout_s is not None and retry is not None and retry >= timeout_s):
                raise RestartingError(agent_id, retry)
        if not mailbox.offer(Envelope(Command(command, payload, deadline), reply)):
            self.system.counters.add("mailbox_full")
            self._dead_letter(agent_id, command, f"mailbox full ({mailbox.limit})")
            raise MailboxFullError(agent_id, mailbox.limit)
        if mailbox.closed:  # stopped while we queued: answer it as a dead letter
            self.system.dead_letters(agent_id, mailbox.drain())

    def _dead_letter(self, agent_id: str, command: str, why: str) -> None:
        self.system.counters.add("dead_letters")
        logger.warning("dead letter: %r for agent %s: %s", command, agent_id, why, extra={"agent_id": agent_id})

    def send(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None) -> None:
        """Tell: queue a command and return at once. Never blocks; fine on an event loop.

        Raises at once if the command cannot be queued (``UnknownAgentError``,
        ``MailboxFullError``, ``RestartingError``); what the handler does later
        is not reported back (a crash still goes to the supervisor).
        """
        self._enqueue(agent_id, command, payload, None)

    async def asend(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None) -> None:
        """``send`` for symmetry in asyncio programs (it never blocks anyway)."""
        self._enqueue(agent_id, command, payload, None)

    def ask(self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float) -> Any:
        """Send a command and wait at most ``timeout`` seconds for its result.

        Raises the handler's ``CommandError``, ``AgentFailedError`` if it
        crashed, ``CommandTimeoutError``, or any refusal ``send`` raises.
        """
        forbid_blocking("Runtime.ask()", "await runtime.aask(...)")
        reply = ThreadReply()
        self._enqueue(agent_id, command, payload, reply, timeout)
        if not reply.wait(timeout):
            raise CommandTimeoutError(agent_id, command, timeout)
        return reply.result()

    async def aask(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
    ) -> Any:
        """``ask`` for asyncio programs; never blocks the loop."""
        return await self.ask_future(agent_id, command, payload, timeout=timeout)

    def ask_future(
        self, agent_id: str, command: str, payload: Mapping[str, Any] | None = None, *, timeout: float
    ) -> asyncio.Future[Any]:
        """Queue the command now and return the future of its result (call it on the event loop).

        Refusals (``UnknownAgentError``, ``MailboxFullError``...) raise at
        once; the future holds the result or the error ``aask`` would raise,
        ``CommandTimeoutError`` after ``timeout`` seconds included. For callers
        that must queue in order before they await (the NATS bridge).
        """
        return _queued(
            timeout, lambda: CommandTimeoutError(agent_id, command, timeout),
            lambda reply: self._enqueue(agent_id, command, payload, reply, timeout),
        )

    # -- stop and restart ---------------------------------------------------------

    def _owner(self, agent_id: str) -> tuple[Supervisor, str, float]:
        """The supervisor of an agent (by id) or of a supervisor (by path), the child id, a time bound."""
        self._check_open()
        child = self.system.agents.get(agent_id)
        if child is None:
            sup = self.system.supervisors.get(agent_id)
            if sup is None or "/" not in agent_id:
                raise self._unknown(agent_id)
            parent, _, child_id = agent_id.rpartition("/")
            return self.system.supervisor(parent), child_id, sup.spec.shutdown_s + sup.spec.start_timeout_s
        bound = child.spec.shutdown_s + child.spec.start_timeout_s
        return self.system.supervisor(child.context.supervisor), agent_id, bound

    def stop(self, agent_id: str) -> None:
        """Stop an agent (by id) or a supervisor (by path) for good, within its ``shutdown_s``, and forget it."""
        forbid_blocking("Runtime.stop()", "await runtime.astop(...)")
        sup, child_id, bound = self._owner(agent_id)
        self._call(sup, TerminateChild(child_id), bound)

    async def astop(self, agent_id: str) -> None:
        sup, child_id, bound = self._owner(agent_id)
        await self._acall(sup, TerminateChild(child_id), bound)

    def restart(self, agent_id: str) -> None:
        """Stop an agent and start a new incarnation now (not counted in the intensity)."""
        forbid_blocking("Runtime.restart()", "await runtime.arestart(...)")
        sup, child_id, bound = self._owner(agent_id)
        self._call(sup, RestartChild(child_id), bound)

    async def arestart(self, agent_id: str) -> None:
        sup, child_id, bound = self._owner(agent_id)
        await self._acall(sup, RestartChild(child_id), bound)

    def _call(self, sup: Supervisor, message: Request, bound_s: float) -> Any:
        reply = ThreadReply()
        sup.post(message, reply)
        if not reply.wait(bound_s + _CALL_MARGIN_S):
            raise CommandTimeoutError(sup.path, type(message).__name__, bound_s + _CALL_MARGIN_S)
        return reply.result()

    async def _acall(self, sup: Supervisor, message: Request, bound_s: float) -> Any:
        timeout = bound_s + _CALL_MARGIN_S
        return await _queued(
            timeout, lambda: CommandTimeoutError(sup.path, type(message).__name__, timeout),
            lambda reply: sup.post(message, reply),
        )

    # -- recovery ---------------------------------------------------------------------

    def recover(self, plan: RecoveryPlan) -> RecoveryReport:
        """Respawn what a recovery plan says (the journal makes it: ``journal.recover(runtime)``).

        Parents first; emits ``recovered``, ``recovery_failed`` and ``stopped``
        (``mistersmith.recovery`` says when). A slot that cannot come back is
        reported, never raised; the report is kept on ``runtime.recovery``.
        """
        forbid_blocking("Runtime.recover()", "await runtime.arecover(...)")
        self._check_open()
        self.recovery = execute(self, plan)
        return self.recovery

    async def arecover(self, plan: RecoveryPlan) -> RecoveryReport:
        """``recover`` for asyncio programs (runs in a helper thread)."""
        return await run_in_thread(lambda: self.recover(plan), "mistersmith-recover")

    # -- introspection (never blocks) ---------------------------------------------------

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        """The agent's status: state, restart count, mailbox depth... Never blocks."""
        child = self.system.agents.get(agent_id)
        if child is None:
            raise self._unknown(agent_id)
        info = child.info()
        info["node_id"] = self.node_id
        return info

    def list_agents(self) -> list[dict[str, Any]]:
        """Every agent hosted here (not supervisors), in no particular order."""
        return [child.info() | {"node_id": self.node_id} for child in list(self.system.agents.values())]

    def tree(self) -> dict[str, Any]:
        """The whole supervision tree as a JSON-compatible snapshot."""
        snap = self._root.snapshot()
        snap["node_id"] = self.node_id
        return snap

    def which_children(self, supervisor: str = "root") -> list[dict[str, Any]]:
        """OTP's ``which_children``: the children of one supervisor, in start order."""
        return [c.info() for c in self.system.supervisor(supervisor).children()]

    def count_children(self, supervisor: str = "root") -> dict[str, int]:
        """OTP's ``count_children``: specs, active, supervisors, workers."""
        return self.system.supervisor(supervisor).count_children()

    def stats(self) -> dict[str, Any]:
        """Counters: agents, restarts, dead letters, mailbox overflows, leaked threads."""
        return {"node_id": self.node_id, "agents": len(self.system.agents), **self.system.counters.snapshot()}

    # -- events -------------------------------------------------------------------

    def subscribe(
        self,
        callback: Any = None,
        *,
        agent_id: str | None = None,
        supervisor: str | None = None,
        event_types: Collection[str] | None = None,
        maxsize: int = 10_000,
    ) -> Subscription:
        """Supervision events from now on: to ``callback`` (in the emitting thread), or queued."""
        return self.bus.subscribe(
            callback, agent_id=agent_id, supervisor=supervisor, event_types=event_types, maxsize=maxsize
        )

    def event_stream(
        self,
        *,
        agent_id: str | None = None,
        supervisor: str | None = None,
        event_types: Collection[str] | None = None,
        maxsize: int = 10_000,
        include_history: bool = False,
    ) -> EventStream:
        """Supervision events as an async iterator (call on the event loop).

        ``include_history``: begin with the kept events (``history()``) emitted
        before this call, each once and in ``seq`` order with what follows.
        """
        return EventStream(self.bus, maxsize, self.events.events if include_history else None,
                           agent_id=agent_id, supervisor=supervisor, event_types=event_types)

    def history(self, *, agent_id: str | None = None, event_types: Collection[str] | None = None) -> list[SupervisionEvent]:
        """The events kept in memory (the newest ``events_kept``), oldest first."""
        return self.events.events(agent_id=agent_id, event_types=event_types)

    # -- shutdown -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _check_open(self) -> None:
        if self.system.closing:
            raise self._closed_error()

    def _closed_error(self) -> RuntimeClosedError:
        if self.fatal_error is not None:
            message = "the runtime shut down after a fatal error; see runtime.fatal_error"
        elif self._closing:
            message = "the runtime is closed; create a new Runtime"
        else:
            message = "the runtime is shutting down: its root supervisor gave up (see runtime.fatal_error)"
        error = RuntimeClosedError(message)
        error.__cause__ = self.fatal_error
        return error

    def _unknown(self, agent_id: str) -> Exception:
        """What a call naming an agent that is not here raises: ``RuntimeClosedError`` from the moment
        the runtime starts closing (or its root gives up), else ``UnknownAgentError``."""
        return self._closed_error() if self.system.closing else UnknownAgentError(agent_id)

    def _root_exited(self, incarnation: Agent, exit_: Exit) -> None:
        # Runs in the root supervisor's thread, as its very last act.
        with self._close_lock:
            if self._closing:
                return
            self._closing = self.system.closing = True
        self.fatal_error = FatalError(f"root supervisor exited ({exit_.describe()}); the runtime shut down")
        self.fatal_error.__cause__ = exit_.exception  # the crash that made the tree give up
        logger.critical("%s", self.fatal_error.message, extra={"supervisor": "root", "reason": exit_.describe()})
        self._shutdown_services()

    def _shutdown_services(self) -> None:
        self.system.stop_watchdog()
        if self._own_clock:
            self.clock.close()
        self._closed.set()

    def wait_closed(self, timeout_s: float) -> bool:
        """Wait until the runtime has closed (by ``close`` or a fatal error)."""
        forbid_blocking("Runtime.wait_closed()", "await runtime.await_closed(...)")
        return self._closed.wait(timeout_s)

    async def await_closed(self, timeout_s: float) -> bool:
        """``wait_closed`` for asyncio programs."""
        return await run_in_thread(lambda: self._closed.wait(timeout_s), "mistersmith-wait-closed")

    def close(self, timeout_s: float | None = None) -> None:
        """Stop every agent and supervisor in reverse start order, then the clock.

        Bounded by the root's ``shutdown_s`` (or ``timeout_s``); a thread that
        would not stop is abandoned and counted. Calling it again is harmless.
        """
        forbid_blocking("Runtime.close()", "await runtime.aclose()")
        with self._close_lock:
            already = self._closing
            self._closing = self.system.closing = True
        if already:
            self._closed.wait(timeout_s if timeout_s is not None else self._root.spec.shutdown_s)
            return
        root = self._root
        root.request_stop(Exit.shutdown("runtime closing"))
        if root.thread is not None:
            root.thread.join(timeout_s if timeout_s is not None else root.spec.shutdown_s)
            if root.thread.is_alive() and root.abandon():
                logger.error("root supervisor did not stop in time; abandoned")
        self._shutdown_services()

    async def aclose(self, timeout_s: float | None = None) -> None:
        """``close`` for asyncio programs (runs in a helper thread)."""
        await run_in_thread(lambda: self.close(timeout_s), "mistersmith-close")

    def _raise_fatal(self, exc: BaseException | None) -> None:
        """On leaving a ``with`` block: the root gave up, so the block must not end as if all went well."""
        if self.fatal_error is not None and exc is None:
            raise self.fatal_error

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close; then raise the ``FatalError`` if the root gave up (its cause: the last crash)."""
        self.close()
        self._raise_fatal(exc)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """``__exit__`` for ``async with``."""
        await self.aclose()
        self._raise_fatal(exc)


def _queued(
    timeout_s: float, on_timeout: Callable[[], Exception], queue: Callable[[LoopReply], None]
) -> asyncio.Future[Any]:
    """A ``LoopReply``'s future after ``queue`` handed the reply slot to an actor; nothing left behind if it raises."""
    reply = LoopReply(timeout_s, on_timeout)
    try:
        queue(reply)
    except BaseException:
        reply.cancel()
        raise
    return reply.future
