"""The context factory: each child's lasting ``AgentContext``, and the events it emits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mistersmith.actors import Agent, AgentContext, Counters, DurableOptions, Exit, Mailbox
from mistersmith.clock import Clock
from mistersmith.errors import SpecError, StartError
from mistersmith.state.store import StateStore

from ._events import EventBus
from ._kinds import Kinds
from ._spec import ChildSpec, SupervisorSpec

__all__ = ["Contexts"]


class Contexts:
    """Makes the context a supervisor hands every incarnation of one child."""

    def __init__(self, clock: Clock, counters: Counters, bus: EventBus, kinds: Kinds, store: StateStore | None,
                 node_id: str) -> None:
        self._clock = clock
        self._counters = counters
        self._bus = bus
        self._kinds = kinds
        self._store = store
        self._node_id = node_id

    def make(
        self,
        spec: ChildSpec | SupervisorSpec,
        agent_id: str,
        supervisor: str,
        on_exit: Callable[[Agent, Exit], None],
    ) -> AgentContext:
        """A new context; its ``start_data`` (what ``started`` events carry) never holds a secret."""
        start_data: dict[str, Any] = {
            "restart": spec.restart, "shutdown_s": spec.shutdown_s, "start_timeout_s": spec.start_timeout_s,
            "backoff": dataclasses.asdict(spec.backoff) if spec.backoff is not None else None,
        }
        durable: DurableOptions | None = None
        if isinstance(spec, SupervisorSpec):
            kind, limit, timeout, idle = "supervisor", 1 << 62, None, None
            config: dict[str, Any] = {}
            start_data.update(strategy=spec.strategy, intensity=spec.intensity, period_s=spec.period_s)
        else:
            kind, limit, timeout = spec.kind_name, spec.mailbox_size, spec.command_timeout_s
            config = dict(spec.config)
            cls = self._kinds.resolve(spec)
            shown = cls.redact_config(config)  # events and the journal never hold secrets
            idle = spec.idle_timeout_s if spec.idle_timeout_s is not None else cls.idle_timeout_s
            start_data.update(config=shown, command_timeout_s=timeout, mailbox_size=limit, stash_limit=spec.stash_limit)
            if idle is not None:
                start_data.update(idle_timeout_s=idle)
            durable = self._durable(spec, cls, agent_id)
            _check_concurrency(cls, agent_id, durable is not None)
            if durable is not None:
                start_data.update(durable=True, state_on_restart=spec.state_on_restart,
                                  state_history=spec.state_history, state_max_bytes=spec.state_max_bytes,
                                  state_timeout_s=spec.state_timeout_s, effect_retention_s=spec.effect_retention_s)
        ctx = AgentContext(
            agent_id=agent_id,
            kind=kind,
            config=config,
            supervisor=supervisor,
            mailbox=Mailbox(limit),
            clock=self._clock,
            counters=self._counters,
            emit=lambda *_: None,
            on_exit=on_exit,
            command_timeout_s=timeout,
            idle_timeout_s=idle,
            start_data=start_data,
            durable=durable,
            shutdown_s=spec.shutdown_s,
        )
        ctx.emit = lambda event_type, reason, data: self.emit_for(ctx, event_type, reason, data)
        return ctx

    def _durable(self, spec: ChildSpec, cls: type[Agent], agent_id: str) -> DurableOptions | None:
        if not (spec.durable if spec.durable is not None else cls.durable):
            return None
        if self._store is None:
            raise StartError(agent_id, "it is durable, and this runtime has no state store")
        return DurableOptions(
            store=self._store, node_id=self._node_id, on_restart=spec.state_on_restart, history=spec.state_history,
            max_bytes=spec.state_max_bytes, timeout_s=spec.state_timeout_s,
            effect_retention_s=spec.effect_retention_s,
        )

    def emit_for(
        self, ctx: AgentContext, event_type: str, reason: str | None, data: dict[str, Any]
    ) -> None:
        """Emit one supervision event about the agent of ``ctx``, in the calling thread."""
        self._bus.emit(
            event_type,
            supervisor=ctx.supervisor,
            agent_id=ctx.agent_id,
            kind=ctx.kind,
            reason=reason,
            restart_count=ctx.restart_count,
            data=data,
        )


def _check_concurrency(cls: type[Agent], agent_id: str, durable: bool) -> None:
    """A kind's ``concurrency``: a whole number of at least 1, and 1 for a durable agent."""
    n = cls.concurrency
    if type(n) is not int or n < 1:
        raise SpecError(agent_id, "concurrency", n, f"kind {cls.__name__}: use a whole number of at least 1")
    if durable and n > 1:
        raise SpecError(agent_id, "concurrency", n, "a durable agent commits its state after each command, "
                                                    "one at a time: use concurrency = 1, or durable=False")
