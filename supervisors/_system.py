"""The services one node's supervisors share.

- the registry of agent kinds, and of the agents and supervisors now hosted;
- the clock, the event bus and the counters;
- the hung-handler watchdog, a periodic sweep on the clock;
- dead-letter accounting for messages that no incarnation will handle.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mistersmith.actors import Agent, AgentContext, Command, Counters, Envelope, Mailbox
from mistersmith.actors._mailbox import deliver
from mistersmith.clock import Clock, TimerHandle
from mistersmith.errors import PoolFullError, RuntimeClosedError, SpecError, UnknownAgentError

from ._child import Child
from ._messages import Hung
from ._events import EventBus
from ._spec import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["System"]

logger = logging.getLogger("mistersmith.supervisor")


class System:
    """Shared state of one node's supervision tree. Thread-safe where it must be."""

    def __init__(
        self,
        node_id: str,
        clock: Clock,
        bus: EventBus,
        *,
        watchdog_interval_s: float = 0.1,
        max_agents: int | None = None,
        max_agents_setting: str = "max_agents",
    ) -> None:
        self.node_id = node_id
        self.clock = clock
        self.bus = bus
        self.counters = Counters()
        self.kinds: dict[str, type[Agent]] = {}
        self.agents: dict[str, Child] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self.max_agents = max_agents
        self.max_agents_setting = max_agents_setting
        self.closing = False  # set once the whole tree is going down (the Runtime sets it)
        self._watchdog_interval_s = watchdog_interval_s
        self._watchdog: TimerHandle | None = None
        self._lock = threading.Lock()

    # -- kinds -------------------------------------------------------------

    def register(self, name: str, cls: type[Agent]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise SpecError(None, "kind", cls, "register an Agent subclass")
        self.kinds[name] = cls

    def resolve(self, spec: ChildSpec) -> type[Agent]:
        kind = spec.kind
        if not isinstance(kind, str):
            return kind
        try:
            return self.kinds[kind]
        except KeyError:
            known = ", ".join(sorted(self.kinds)) or "none registered"
            raise SpecError(spec.id, "kind", kind, f"use a registered kind ({known})") from None

    # -- contexts and events -------------------------------------------------

    def make_context(
        self,
        spec: ChildSpec | SupervisorSpec,
        agent_id: str,
        supervisor: str,
        on_exit: Any,
    ) -> AgentContext:
        start_data: dict[str, Any] = {
            "restart": spec.restart, "shutdown_s": spec.shutdown_s, "start_timeout_s": spec.start_timeout_s,
            "backoff": dataclasses.asdict(spec.backoff) if spec.backoff is not None else None,
        }
        if isinstance(spec, SupervisorSpec):
            kind, limit, timeout = "supervisor", 1 << 62, None
            config: dict[str, Any] = {}
            start_data.update(strategy=spec.strategy, intensity=spec.intensity, period_s=spec.period_s)
        else:
            kind, limit, timeout = spec.kind_name, spec.mailbox_size, spec.command_timeout_s
            config = dict(spec.config)
            shown = self.resolve(spec).redact_config(config)  # events and the journal never hold secrets
            start_data.update(config=shown, command_timeout_s=timeout, mailbox_size=limit, stash_limit=spec.stash_limit)
        ctx = AgentContext(
            agent_id=agent_id,
            kind=kind,
            config=config,
            supervisor=supervisor,
            mailbox=Mailbox(limit),
            clock=self.clock,
            counters=self.counters,
            emit=lambda *_: None,
            on_exit=on_exit,
            command_timeout_s=timeout,
            start_data=start_data,
        )
        ctx.emit = lambda event_type, reason, data: self.emit_for(ctx, event_type, reason, data)
        return ctx

    def emit_for(
        self, ctx: AgentContext, event_type: str, reason: str | None, data: dict[str, Any]
    ) -> None:
        self.bus.emit(
            event_type,
            supervisor=ctx.supervisor,
            agent_id=ctx.agent_id,
            kind=ctx.kind,
            reason=reason,
            restart_count=ctx.restart_count,
            data=data,
        )

    # -- registry ----------------------------------------------------------------

    def claim(self, child: Child) -> bool:
        """Register an agent id; False if another agent holds it.

        Raises ``PoolFullError`` when ``max_agents`` agents already hold a
        slot (an agent holds one until it is stopped for good).
        """
        kind_limit = None if child.is_supervisor else self.resolve(child.spec).pool_size  # type: ignore[arg-type]
        if self.max_agents is None and kind_limit is None:
            return self.agents.setdefault(child.id, child) is child
        with self._lock:
            if child.id in self.agents:
                return False
            live = [c for c in self.agents.values() if not c.context.mailbox.closed]
            if self.max_agents is not None and len(live) >= self.max_agents:
                raise PoolFullError(self.max_agents, self.max_agents_setting)
            if kind_limit is not None:
                kind = child.context.kind
                if sum(1 for c in live if c.context.kind == kind) >= kind_limit:
                    raise PoolFullError(kind_limit, self.kind_limit_setting(kind), kind)
            self.agents[child.id] = child
            return True

    def kind_limit_setting(self, kind: str) -> str:
        """How a user raises one kind's limit (``pool_size``)."""
        cls = self.kinds.get(kind)
        hint = getattr(cls, "pool_size_setting", None)
        return str(hint) if hint else f"{cls.__name__ if cls else kind}.pool_size"

    def release(self, child: Child) -> None:
        """Forget an agent for good; whatever its mailbox still holds is dead-lettered."""
        if self.agents.get(child.id) is child:
            del self.agents[child.id]
        mailbox = child.context.mailbox
        mailbox.closed = True
        self.dead_letters(child.id, mailbox.drain())

    def dead_letters(self, agent_id: str, envelopes: Iterable[Envelope]) -> None:
        """Answer (and count, and log) messages that no incarnation will handle.

        Their callers get ``UnknownAgentError``, or ``RuntimeClosedError`` once the
        tree is going down (``closing``: the runtime closes, or its root gave up).
        """
        for envelope in envelopes:
            message = envelope.message
            if not isinstance(message, Command):
                if envelope.reply_to is not None:
                    deliver(envelope.reply_to, error=self._gone(agent_id))
                continue
            self.counters.add("dead_letters")
            logger.warning(
                "dead letter: %r for stopped agent %s", message.name, agent_id,
                extra={"agent_id": agent_id},
            )
            deliver(envelope.reply_to, error=self._gone(agent_id))

    def _gone(self, agent_id: str) -> Exception:
        if self.closing:
            return RuntimeClosedError(f"agent {agent_id!r} was stopped: the runtime is shutting down")
        return UnknownAgentError(agent_id)

    def supervisor(self, path: str) -> Supervisor:
        try:
            return self.supervisors[path]
        except KeyError:
            raise UnknownAgentError(path, "supervisor") from None

    # -- watchdog -------------------------------------------------------------

    def start_watchdog(self) -> None:
        with self._lock:
            self._watchdog = self.clock.call_later(self._watchdog_interval_s, self._sweep)

    def stop_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = None

    def _sweep(self) -> None:
        # On the clock thread: look, and tell the supervisor; never emit (that may wait on the journal).
        now = self.clock.now()
        for child in list(self.agents.values()):
            inc = child.incarnation
            if inc is not None and inc._busy_since is not None and inc.overdue(now):
                sup = self.supervisors.get(child.context.supervisor)
                if sup is not None:
                    sup.mailbox.put(Envelope(Hung(inc)))
        with self._lock:
            if self._watchdog is not None:
                self._watchdog = self.clock.call_later(self._watchdog_interval_s, self._sweep)

