"""The services one node's supervisors share, each in a room of its own.

- ``Kinds`` (``_kinds``): the registry of agent kinds;
- ``Directory`` (``_directory``): the agents and supervisors hosted now, and the pool limits;
- ``Contexts`` (``_contexts``): each child's lasting context, and the events it emits;
- ``DeadLetters`` (``_dead_letters``): messages that no incarnation will handle;
- ``Watchdog`` (``_watchdog``): the hung-handler sweep on the clock;

plus the clock, the event bus, the counters and the state store of durable agents. ``System`` composes them and
keeps one name for each thing (``system.agents``, ``system.claim``...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from mistersmith.actors import BREAKER_STATES, Agent, AgentContext, Counters, Exit, Letter
from mistersmith.clock import Clock
from mistersmith.state.store import StateStore

from ._child import Child
from ._contexts import Contexts
from ._dead_letters import DeadLetters
from ._directory import Directory, Owners
from ._events import EventBus
from ._kinds import Kinds
from ._spec import ChildSpec, SupervisorSpec
from ._watchdog import Overseer, Watchdog

__all__ = ["System"]

SupervisorT = TypeVar("SupervisorT", bound=Overseer)


class System(Generic[SupervisorT]):
    """Shared state of one node's supervision tree (``System[Supervisor]``). Thread-safe where it must be."""

    def __init__(
        self,
        node_id: str,
        clock: Clock,
        bus: EventBus,
        *,
        watchdog_interval_s: float = 0.1,
        max_agents: int | None = None,
        max_agents_setting: str = "max_agents",
        state_store: StateStore | None = None,
        owners: Owners | None = None,
    ) -> None:
        self.node_id = node_id
        self.state_store = state_store
        self.clock = clock
        self.bus = bus
        self.counters = Counters()
        self.closing = False  # set once the whole tree is going down (the Runtime sets it)
        self._kinds = Kinds()
        self._dead_letters = DeadLetters(self.counters, lambda: self.closing, clock.now)
        self.moved = self._dead_letters.moved
        self._directory: Directory[SupervisorT] = Directory(
            self._kinds, self._dead_letters, max_agents, max_agents_setting, owners
        )
        self._contexts = Contexts(clock, self.counters, bus, self._kinds, state_store, node_id)
        self.kinds: dict[str, type[Agent]] = self._kinds.classes
        self.agents: dict[str, Child] = self._directory.agents
        self.supervisors: dict[str, SupervisorT] = self._directory.supervisors
        self._watchdog = Watchdog(clock, watchdog_interval_s, self.agents, self.supervisors)

    # -- kinds -------------------------------------------------------------------

    def register(self, name: str, cls: type[Agent]) -> None:
        self._kinds.register(name, cls)

    def resolve(self, spec: ChildSpec) -> type[Agent]:
        return self._kinds.resolve(spec)

    def kind_limit_setting(self, kind: str) -> str:
        return self._kinds.limit_setting(kind)

    # -- contexts and events -------------------------------------------------------

    def make_context(
        self,
        spec: ChildSpec | SupervisorSpec,
        agent_id: str,
        supervisor: str,
        on_exit: Callable[[Agent, Exit], None],
    ) -> AgentContext:
        ctx = self._contexts.make(spec, agent_id, supervisor, on_exit)
        ctx.gone = self._dead_letters.gone
        return ctx

    def emit_for(self, ctx: AgentContext, event_type: str, reason: str | None, data: dict[str, Any]) -> None:
        self._contexts.emit_for(ctx, event_type, reason, data)

    # -- the directory ---------------------------------------------------------------

    @property
    def max_agents(self) -> int | None:
        return self._directory.max_agents

    @property
    def max_agents_setting(self) -> str:
        return self._directory.max_agents_setting

    def claim(self, child: Child, *, across: bool = True) -> bool:
        return self._directory.claim(child, across=across)

    @property
    def claims_across(self) -> bool:
        """Whether a spawn claims its id across a cluster (a node on a shared PostgreSQL)."""
        return self._directory.owners is not None

    def claim_across(self, agent_id: str) -> bool:
        """Before a spawn, in the caller's thread (never a supervisor's): see ``Directory.claim_across``."""
        return self._directory.claim_across(agent_id)

    def release(self, child: Child) -> None:
        self._directory.release(child)

    def give_up(self, child: Child) -> None:
        self._directory.give_up(child)

    def supervisor(self, path: str) -> SupervisorT:
        return self._directory.supervisor(path)

    # -- dead letters and the watchdog ----------------------------------------------------

    def dead_letters(self, agent_id: str, envelopes: Iterable[Letter]) -> None:
        self._dead_letters.answer(agent_id, envelopes)

    def gone(self, agent_id: str) -> Exception:
        """What a caller of an agent not hosted here is told (``DeadLetters.gone``)."""
        return self._dead_letters.gone(agent_id)

    def breaker_counts(self) -> dict[str, int]:
        """How many circuit breakers of the agents hosted here are in each state (any thread; never blocks):
        ``{"breakers_closed": n, "breakers_open": n, "breakers_half_open": n}``."""
        totals = dict.fromkeys(BREAKER_STATES, 0)
        for child in list(self.agents.values()):
            if len(child.context.breakers):
                for state, n in child.context.breakers.counts().items():
                    totals[state] += n
        return {f"breakers_{state}": n for state, n in totals.items()}

    def start_watchdog(self) -> None:
        self._watchdog.start()

    def stop_watchdog(self) -> None:
        self._watchdog.stop()
