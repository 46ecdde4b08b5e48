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

import pykka

from mistersmith.actors import Agent, Command, EchoAgent, Envelope, Exit, ProcessAgent, ThreadReply
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
from mistersmith.supervisors import (
    Backoff,
    ChildSpec,
    EventBus,
    EventSink,
    MemorySink,
    Restart,
    Subscription,
    SupervisionEvent,
    Supervisor,
    SupervisorSpec,
    System,
)
from mistersmith.supervisors._spec import check_id
from mistersmith.supervisors._messages import RestartChild, StartChild, TerminateChild

__all__ = ["Runtime"]

logger = logging.getLogger("mistersmith.runtime")

_CALL_MARGIN_S = 5.0  # added to a child's own bound when waiting for its supervisor


class Runtime:
    """One node's supervision tree and the calls to reach its agents.

    ``root`` is the root supervisor's spec (default: ``one_for_one`` with OTP's
    intensity); its static children start before the constructor returns.
    ``clock`` is injectable (``FakeClock`` in tests). ``sinks`` receive every
    supervision event, after the built-in in-memory one (``runtime.events``).
    ``max_agents`` caps the agents hosted at once (``PoolFullError`` past it);
    a stopped agent frees its slot, a restarting one keeps it.
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
    ) -> None:
        self.node_id = check_id(node_id or f"node-{uuid.uuid4().hex[:12]}", "node_id")
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.bus = EventBus(self.node_id)
        self.events = MemorySink(events_kept)
        self.bus.add_sink(self.events)
        for sink in sinks:
            self.bus.add_sink(sink)
        self.system = System(
            self.node_id, self.clock, self.bus, watchdog_interval_s=watchdog_interval_s, max_agents=max_agents
        )
        self._agents = self.system.agents
        self.system.register("echo", EchoAgent)
        self.system.register("process", ProcessAgent)
        for name, cls in (kinds or {}).items():
            self.register(name, cls)
        self.fatal_error: FatalError | None = None
        self._closing = False
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        spec = root if root is not None else SupervisorSpec("root")
        ctx = self.system.make_context(spec, spec.id, "", self._root_exited)
        self._root = Supervisor(ctx, spec, self.system)
        pykka.ActorRegistry.register(self._root.actor_ref)
        self._root._start_actor_loop()
        self._root.started.wait()
        if self._root.start_error is not None:
            self._shutdown_services()
            raise StartError(spec.id, f"{self._root.start_error}") from self._root.start_error
        self.system.start_watchdog()

    # -- kinds and spawning -------------------------------------------------------

    def register(self, kind: str, cls: type[Agent]) -> None:
        """Make ``cls`` spawnable under the name ``kind``."""
        check_id(kind, "kind")
        self.system.register(kind, cls)

    def kinds(self) -> dict[str, list[str]]:
        """Every registered kind and the commands its agents answer."""
        return {name: sorted(cls._commands) for name, cls in self.system.kinds.items()}

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
            self.system.resolve(spec)  # an unknown kind fails here, before the supervisor
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

    def _enqueue(self, agent_id: str, command: str, payload: Any, reply: Any) -> None:
        # The hot path of send/ask: keep it lean.
        if self._closing:
            self._check_open()
        child = self._agents.get(agent_id)
        mailbox = child.context.mailbox if child is not None else None
        if child is None or mailbox is None or mailbox.closed:
            self._dead_letter(agent_id, command, "no such agent")
            raise UnknownAgentError(agent_id)
        if payload is None:
            payload = {}
        elif type(payload) is not dict and not isinstance(payload, Mapping):
            raise InvalidPayloadError(command, f"payload must be a JSON object, not {type(payload).__name__}")
        if child.restart_token is not None and mailbox.depth() >= getattr(child.spec, "stash_limit", 0):
            retry = None if child.restart_at is None else max(0.0, child.restart_at - self.clock.now())
            raise RestartingError(agent_id, retry)
        if not mailbox.offer(Envelope(Command(command, payload), reply)):
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
        self._enqueue(agent_id, command, payload, reply)
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
            lambda reply: self._enqueue(agent_id, command, payload, reply),
        )

    # -- stop and restart ---------------------------------------------------------

    def _owner(self, agent_id: str) -> tuple[Supervisor, str, float]:
        """The supervisor of an agent (by id) or of a supervisor (by path), the child id, a time bound."""
        self._check_open()
        child = self.system.agents.get(agent_id)
        if child is None:
            sup = self.system.supervisors.get(agent_id)
            if sup is None or "/" not in agent_id:
                raise UnknownAgentError(agent_id)
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

    def _post(self, sup: Supervisor, message: Any, reply: Any) -> None:
        sup.mailbox.put(Envelope(message, reply))
        if sup.mailbox.closed:  # the supervisor stopped meanwhile: refuse instead of hanging
            self.system.dead_letters(sup.path, sup.mailbox.drain())

    def _call(self, sup: Supervisor, message: Any, bound_s: float) -> Any:
        reply = ThreadReply()
        self._post(sup, message, reply)
        if not reply.wait(bound_s + _CALL_MARGIN_S):
            raise CommandTimeoutError(sup.path, type(message).__name__, bound_s + _CALL_MARGIN_S)
        return reply.result()

    async def _acall(self, sup: Supervisor, message: Any, bound_s: float) -> Any:
        timeout = bound_s + _CALL_MARGIN_S
        return await _queued(
            timeout, lambda: CommandTimeoutError(sup.path, type(message).__name__, timeout),
            lambda reply: self._post(sup, message, reply),
        )

    # -- introspection (never blocks) ---------------------------------------------------

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        """The agent's status: state, restart count, mailbox depth... Never blocks."""
        child = self.system.agents.get(agent_id)
        if child is None:
            raise UnknownAgentError(agent_id)
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
    ) -> EventStream:
        """Supervision events as an async iterator (call on the event loop)."""
        return EventStream(self.bus, maxsize, agent_id=agent_id, supervisor=supervisor, event_types=event_types)

    def history(self, *, agent_id: str | None = None, event_types: Collection[str] | None = None) -> list[SupervisionEvent]:
        """The events kept in memory (the newest ``events_kept``), oldest first."""
        return self.events.events(agent_id=agent_id, event_types=event_types)

    # -- shutdown -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _check_open(self) -> None:
        if self._closing:
            error = RuntimeClosedError(
                "the runtime shut down after a fatal error; see runtime.fatal_error"
                if self.fatal_error is not None
                else "the runtime is closed; create a new Runtime"
            )
            raise error from self.fatal_error

    def _root_exited(self, incarnation: Agent, exit_: Exit) -> None:
        # Runs in the root supervisor's thread, as its very last act.
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        self.fatal_error = FatalError(f"root supervisor exited ({exit_.describe()}); the runtime shut down")
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
            self._closing = True
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

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


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
