"""The directory: which agents (by id) and supervisors (by path) this node hosts now.

An agent holds its slot from its first start until it is stopped for good
(a restarting agent keeps it); the pool limits are checked when it claims one.
With ``owners`` (a node on a shared PostgreSQL) the id is claimed across the
cluster too, and released when the agent is given up on purpose
(``give_up``), never when a node merely stops or hands it over. A spawn claims
it in the spawner's thread (``claim_across``, before its supervisor is asked),
so no supervisor waits on PostgreSQL while its other children need it; a
static child of a supervisor spec is claimed in its supervisor, after the
local slot.
"""

from __future__ import annotations

import logging
import threading
from typing import Generic, Protocol, TypeVar

from mistersmith.errors import MisterSmithError, PoolFullError, UnknownAgentError

from ._child import Child
from ._dead_letters import DeadLetters
from ._kinds import Kinds
from ._spec import ChildSpec

__all__ = ["Directory", "Owners"]

logger = logging.getLogger("mistersmith.supervisor")

SupervisorT = TypeVar("SupervisorT")


class Owners(Protocol):
    """Agent ids across a cluster (``mistersmith.journal.PgOwners``): blocking, any thread."""

    def claim(self, agent_id: str) -> None:
        """Own ``agent_id`` here, or raise ``AgentExistsError`` naming the node that owns it."""

    def release(self, agent_id: str) -> None:
        """Give ``agent_id`` up on purpose (if owned here): any node may claim it then."""


class Directory(Generic[SupervisorT]):
    """Agents by id, supervisors by path. Reads from any thread; claims are locked when limited."""

    def __init__(
        self, kinds: Kinds, dead_letters: DeadLetters, max_agents: int | None, max_agents_setting: str,
        owners: Owners | None = None,
    ) -> None:
        self.owners = owners
        self.agents: dict[str, Child] = {}
        self.supervisors: dict[str, SupervisorT] = {}
        self.max_agents = max_agents
        self.max_agents_setting = max_agents_setting
        self._kinds = kinds
        self._dead_letters = dead_letters
        self._lock = threading.Lock()

    def claim(self, child: Child, *, across: bool = True) -> bool:
        """Take ``child``'s slot here and (``across``, with ``owners``) its id across the cluster."""
        if not self._claim_here(child):
            return False
        if across:
            try:
                self.claim_across(child.id)
            except BaseException:
                self.agents.pop(child.id, None)
                raise
        return True

    def claim_across(self, agent_id: str) -> bool:
        """Claim ``agent_id`` across the cluster now, blocking (``AgentExistsError`` if another node owns
        it, ``unavailable`` while PostgreSQL is away); False when there is no cluster to claim it in."""
        if self.owners is None:
            return False
        self.owners.claim(agent_id)
        return True

    def give_up(self, child: Child) -> None:
        """The agent ended for good on purpose: free its id across the cluster (logged if that fails)."""
        if self.owners is not None and not child.is_supervisor:
            try:
                self.owners.release(child.id)
            except MisterSmithError as exc:
                logger.warning("could not release agent id %s: %s", child.id, exc)

    def _claim_here(self, child: Child) -> bool:
        """Register an agent id; False if another agent holds it.

        Raises ``PoolFullError`` when ``max_agents`` agents already hold a
        slot, or the agent's kind has its ``pool_size`` of them.
        """
        spec = child.spec
        kind_limit = self._kinds.resolve(spec).pool_size if isinstance(spec, ChildSpec) else None
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
                    raise PoolFullError(kind_limit, self._kinds.limit_setting(kind), kind)
            self.agents[child.id] = child
            return True

    def release(self, child: Child) -> None:
        """Forget an agent for good; whatever its mailbox still holds is dead-lettered."""
        if self.agents.get(child.id) is child:
            del self.agents[child.id]
        mailbox = child.context.mailbox
        mailbox.closed = True
        self._dead_letters.answer(child.id, mailbox.drain())

    def supervisor(self, path: str) -> SupervisorT:
        """The supervisor at ``path`` (``root``, ``root/workers``...), or ``UnknownAgentError``."""
        try:
            return self.supervisors[path]
        except KeyError:
            raise UnknownAgentError(path, "supervisor") from None
