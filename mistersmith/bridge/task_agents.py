"""Who runs a task: the agents a task worker lends each task to (``TaskAgents``).

- ``HostedAgents``, what ``TaskQueue.serve(kind)`` uses unless told
  otherwise: the agents of the kind this node hosts, whoever spawned them,
  round robin. With none hosted the task is retried (``unavailable``).
- ``AgentPool``, what a node serves with (``serve_pools``): agents that the
  pool spawns for tasks and nothing else, ``task-{kind}-{8 hex}``,
  ``restart="temporary"``, under the supervisor ``tasks`` (path
  ``root/tasks``, made by the first spawn). A pool agent runs one task at a
  time. A task that finds no idle pool agent spawns one, up to ``size``;
  the agent is kept for the next task. An agent whose task crashed it
  (``agent_failed``: temporary, it is not restarted) or timed out (it is
  stopped then, its handler may still be running) leaves the pool, and a
  later task spawns another. Agents of the kind spawned by anyone else never
  get a task from a pool. Pool agents show in ``list``, ``tree`` and
  discovery like any agent, and count towards ``node.max_agents``; a node
  restart does not bring them back (temporary), the next tasks spawn new ones.

``serve_pools`` is what a node does when it starts: create the task streams,
then serve every kind it runs whose agents start with no config, each with
a pool of ``max_in_flight`` agents (the node's ``tasks.concurrency``).

Runs on the event loop.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mistersmith.audit import internal
from mistersmith.actors import Agent
from mistersmith.errors import MisterSmithError, SpecError, UnknownAgentError
from mistersmith.runtime import Runtime
from mistersmith.supervisors import SupervisorSpec

from .errors import NoTaskAgentError

if TYPE_CHECKING:
    from .tasks import TaskQueue

__all__ = ["SUPERVISOR_PATH", "AgentPool", "HostedAgents", "TaskAgents", "serve_pools"]

logger = logging.getLogger("mistersmith.bridge.tasks")

SUPERVISOR = "tasks"
SUPERVISOR_PATH = f"root/{SUPERVISOR}"
_GONE = frozenset({"stopping", "stopped", "failed"})
# Codes after which a pool agent is not lent again: it crashed, hung, went away, or is not answering now.
_DROP = frozenset({"agent_failed", "timeout", "unknown_agent", "closed", "paused", "restarting", "mailbox_full"})
_MAX_ID = 128


class TaskAgents(Protocol):
    """Lends agents to a kind's task worker, one task at a time (on the event loop)."""

    async def acquire(self) -> str:
        """The agent to run the next task. Raises a ``MisterSmithError`` if none can: the task is
        retried (nak'ed with backoff) with its code."""
        ...

    async def release(self, agent_id: str, error: str | None) -> None:
        """The task lent to ``agent_id`` ended: ``error`` is None on success, else the error code
        ``Runtime.aask`` raised. Must not raise."""
        ...


def _usable(runtime: Runtime, agent_id: str) -> bool:
    try:
        info = runtime.get_agent(agent_id)
    except MisterSmithError:  # not hosted (any more), or the runtime is closed
        return False
    return info.get("state") not in _GONE and not info.get("paused")


class HostedAgents:
    """Every agent of ``kind`` hosted here, round robin (the library default)."""

    def __init__(self, runtime: Runtime, kind: str) -> None:
        self.runtime = runtime
        self.kind = kind
        self._turn = itertools.count()

    async def acquire(self) -> str:
        agents = sorted(str(a["id"]) for a in self.runtime.list_agents()
                        if a.get("kind") == self.kind and a.get("state") not in _GONE)
        if not agents:
            raise NoTaskAgentError(self.kind, self.runtime.node_id, "none is hosted here")
        return agents[next(self._turn) % len(agents)]

    async def release(self, agent_id: str, error: str | None) -> None:
        return None


class AgentPool:
    """At most ``size`` temporary agents of ``kind`` under ``root/tasks``, spawned as tasks need them.

    ``command_timeout_s``: the pool agents' own bound on one command (None: the kind's default).
    ``spawned`` counts the agents it started.
    """

    def __init__(self, runtime: Runtime, kind: str, size: int, *, command_timeout_s: float | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SpecError(None, "size", size, "use an integer >= 1")
        self.runtime = runtime
        self.kind = kind
        self.size = size
        self.command_timeout_s = command_timeout_s
        self.spawned = 0
        self._idle: list[str] = []
        self._busy: set[str] = set()
        self._spawning = 0

    def agents(self) -> list[str]:
        """The pool's agents now (idle and busy), sorted."""
        return sorted({*self._idle, *self._busy})

    async def acquire(self) -> str:
        while self._idle:
            agent_id = self._idle.pop()  # the most recently used first
            if _usable(self.runtime, agent_id):
                self._busy.add(agent_id)
                return agent_id
        if len(self._busy) + self._spawning >= self.size:
            raise NoTaskAgentError(self.kind, self.runtime.node_id,
                                   f"all {self.size} pool agents are busy (the pool is smaller than max_in_flight)")
        self._spawning += 1
        try:
            agent_id = await self._spawn()
        finally:
            self._spawning -= 1
        self._busy.add(agent_id)
        return agent_id

    async def release(self, agent_id: str, error: str | None) -> None:
        self._busy.discard(agent_id)
        if error not in _DROP:
            if _usable(self.runtime, agent_id):
                self._idle.append(agent_id)
            return
        logger.info("pool agent %s leaves the %s task pool (%s)", agent_id, self.kind, error,
                    extra={"agent_id": agent_id, "reason": error})
        if error == "timeout" and _usable(self.runtime, agent_id):
            try:  # its handler may still run: stop it (bounded by its shutdown_s, then abandoned)
                with internal():
                    await self.runtime.astop(agent_id)
            except MisterSmithError as exc:
                logger.debug("stopping pool agent %s: %r", agent_id, exc)

    async def _spawn(self) -> str:
        await _ensure_supervisor(self.runtime)
        agent_id = f"task-{self.kind}-{uuid.uuid4().hex[:8]}"
        if len(agent_id) > _MAX_ID:
            agent_id = f"task-{uuid.uuid4().hex}"
        options: dict[str, Any] = {} if self.command_timeout_s is None else {
            "command_timeout_s": self.command_timeout_s}
        with internal():  # the node's own pool, not an action of anyone's (mistersmith.audit)
            spawned = await self.runtime.aspawn(self.kind, agent_id, None, "temporary", supervisor=SUPERVISOR_PATH,
                                                **options)
        self.spawned += 1
        logger.info("pool agent %s started for %s tasks", spawned, self.kind, extra={"agent_id": spawned})
        return spawned


def _has_supervisor(runtime: Runtime) -> bool:
    try:
        runtime.count_children(SUPERVISOR_PATH)
    except UnknownAgentError:
        return False
    return True


async def _ensure_supervisor(runtime: Runtime) -> None:
    """The ``tasks`` supervisor under the root (recovery may have brought it back already)."""
    if _has_supervisor(runtime):
        return
    try:
        await runtime.aadd_supervisor(SupervisorSpec(SUPERVISOR), "root")
    except MisterSmithError:
        if not _has_supervisor(runtime):  # else another pool made it meanwhile
            raise


def _unpoolable(cls: type[Agent]) -> str | None:
    """Why a pool cannot spawn agents of ``cls`` (they need a config a task cannot give), or None."""
    try:
        cls.check_config({}, None)
    except SpecError as exc:
        return exc.message
    return None


async def serve_pools(queue: TaskQueue, kinds: Mapping[str, type[Agent]]) -> dict[str, AgentPool]:
    """Create the task streams, then serve each of ``kinds`` with an ``AgentPool`` of
    ``queue.options.max_in_flight`` agents; returns the pools by kind. A kind whose agents need
    a config to start (the generic ``process`` kind) is not served, and a warning says why."""
    await queue.ensure_streams()
    options = queue.options
    pools: dict[str, AgentPool] = {}
    for kind, cls in sorted(kinds.items()):
        why = _unpoolable(cls)
        if why is not None:
            logger.warning("tasks of kind %s are not served: its agents need a config to start (%s)", kind, why)
            continue
        own = cls.command_timeout_for({})
        pool = AgentPool(queue.runtime, kind, options.max_in_flight,
                         command_timeout_s=max(options.task_timeout_s, own or 0.0))
        await queue.serve(kind, agents=pool)
        pools[kind] = pool
    logger.info("serving tasks of %s, up to %d at a time per kind", ", ".join(pools) or "no kind",
                options.max_in_flight)
    return pools
