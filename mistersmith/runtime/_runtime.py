"""``Runtime``: the facade a Python program embeds, sync or asyncio.

A Runtime owns one supervision tree (root supervisor ``root``), its event bus
and the node's counters. Blocking methods (``ask``, ``spawn``, ``stop``,
``close``...) refuse to run on an event loop thread and name their awaitable
twin (``aask``, ``aspawn``...); ``send`` never blocks and works anywhere.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

from mistersmith.actors import Agent, EchoAgent, Exit
from mistersmith.clock import Clock, MonotonicClock
from mistersmith.crossing import EventStream, forbid_blocking, run_in_thread
from mistersmith.errors import FatalError, StartError, UnknownAgentError
from mistersmith.recovery import RecoveryPlan, RecoveryReport, execute
from mistersmith.state import MemoryStateStore, StateStore
from mistersmith.supervisors import (
    EventBus,
    Owners,
    EventSink,
    MemorySink,
    Subscription,
    SupervisionEvent,
    Supervisor,
    SupervisorSpec,
    System,
    check_id,
    tolerant_root,
)

from ._audited import Audited

__all__ = ["Runtime"]

logger = logging.getLogger("mistersmith.runtime")

_PROCESS_REFUSED = (
    "the process kind runs any program its spawner names, so a Runtime does not register it; register it in "
    "code (Runtime(kinds={'process': ProcessAgent})), or a named kind (ProcessKind) whose command you choose"
)


class Runtime(Audited):
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

    ``state_store`` keeps the state and effect records of durable agents
    (default: a ``MemoryStateStore`` of its own, for this process's life; a
    ``SqliteStateStore`` keeps them across processes, and a node uses
    PostgreSQL). Runtimes sharing one store fence one another: a durable agent
    activated by one stops, ``fenced``, on its next write in the other.
    ``owners`` (a node on a shared PostgreSQL: ``PgOwners``) makes agent ids
    unique across nodes: a spawn of an id another node owns is refused.
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
        state_store: StateStore | None = None,
        owners: Owners | None = None,
    ) -> None:
        self.node_id = check_id(node_id or f"node-{uuid.uuid4().hex[:12]}", "node_id")
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.bus = EventBus(self.node_id)
        self.events = MemorySink(events_kept)
        self.bus.add_sink(self.events)
        for sink in sinks:
            self.bus.add_sink(sink)
        self._own_store = state_store is None
        self.state_store: StateStore = state_store if state_store is not None else MemoryStateStore()
        self.system: System[Supervisor] = System(
            self.node_id, self.clock, self.bus, watchdog_interval_s=watchdog_interval_s, max_agents=max_agents,
            max_agents_setting=max_agents_setting, state_store=self.state_store, owners=owners,
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

    def adopt(self, plan: RecoveryPlan, from_node: str, epochs: Mapping[str, int]) -> RecoveryReport:
        """Respawn another node's agents here (a takeover: ``mistersmith.journal.takeover`` claimed
        them); like ``recover``, but each emits ``taken_over`` (data: ``from_node``, ``to_node``, ``epoch``)."""
        forbid_blocking("Runtime.adopt()", "await asyncio.to_thread(runtime.adopt, ...)")
        self._check_open()
        data = {agent_id: {"from_node": from_node, "to_node": self.node_id, "epoch": epoch}
                for agent_id, epoch in epochs.items()}
        return execute(self, plan, event_type="taken_over", reason=f"taken over from node {from_node}", data=data)

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

    def get_state(self, agent_id: str, version: int | None = None) -> dict[str, Any]:
        """A durable agent's last committed state (or version ``version``, if still kept), as
        ``{"agent_id", "version", "epoch", "state", "bytes", "node_id", "committed_at"}``.

        Read from the state store, so it answers for an agent that runs elsewhere or not at all.
        A durable agent hosted here that committed nothing yet has version 0 and ``{}``.
        Raises ``UnknownAgentError`` if no such state is kept.
        """
        forbid_blocking("Runtime.get_state()", "await runtime.aget_state(...)")
        found = self.state_store.read(agent_id, version)
        if found is not None:
            return found.to_dict()
        child = self.system.agents.get(agent_id)
        if version in (None, 0) and child is not None and child.context.durable is not None:
            return {"agent_id": agent_id, "version": 0, "epoch": None, "state": {}, "bytes": 2,
                    "node_id": self.node_id, "committed_at": None}
        which = "no committed state" if version is None else f"no state version {version}"
        raise UnknownAgentError(agent_id, message=f"{which} of agent {agent_id!r} is kept (is it durable?)")

    async def aget_state(self, agent_id: str, version: int | None = None) -> dict[str, Any]:
        """``get_state`` for asyncio programs (runs in a helper thread)."""
        return await run_in_thread(lambda: self.get_state(agent_id, version), "mistersmith-get-state")

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
        """Counters: agents, restarts, dead letters, mailbox overflows, leaked threads; and how many of the
        agents' circuit breakers are closed, open and half-open (``breakers_<state>``)."""
        return {"node_id": self.node_id, "agents": len(self.system.agents), **self.system.counters.snapshot(),
                **self.system.breaker_counts()}

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
        if self._own_store:
            self.state_store.close()
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
