"""``MemoryStateStore``: durable-state semantics within one process (a bare ``Runtime()``'s default).

Nothing survives the process; everything else is as in the durable stores: epochs
fence older activations, versions only grow, effect records outlive restarts.
Several Runtimes may share one instance (they then fence one another). One lock
makes each call atomic.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from mistersmith.errors import FencedError, StateUnavailableError

from .store import Activation, StateVersion

__all__ = ["MemoryStateStore"]


@dataclass
class _Agent:
    epoch: int = 0
    version: int = 0
    node_id: str = ""
    states: list[tuple[int, int, bytes, str, datetime]] = field(default_factory=list)  # version, epoch, json, node, at
    effects: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # key -> (outcome, recorded at)


class MemoryStateStore:
    """Implements ``mistersmith.state.StateStore`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[str, _Agent] = {}
        self._closed = False

    def _open(self, agent_id: str, what: str) -> None:
        if self._closed:
            raise StateUnavailableError(agent_id, what, "the state store is closed")

    def _owned(self, agent_id: str, epoch: int, what: str) -> _Agent:
        self._open(agent_id, what)
        agent = self._agents.get(agent_id)
        if agent is None or agent.epoch != epoch:
            raise FencedError(agent_id, epoch)
        return agent

    def activate(
        self, agent_id: str, node_id: str, *, reset: bool = False, effect_retention_s: float | None = None,
        keep: int | None = None,
    ) -> Activation:
        with self._lock:
            self._open(agent_id, "its activation")
            agent = self._agents.setdefault(agent_id, _Agent())
            agent.epoch += 1
            agent.node_id = node_id
            if effect_retention_s is not None:
                cutoff = time.time() - effect_retention_s
                agent.effects = {k: v for k, v in agent.effects.items() if v[1] >= cutoff}
            if reset and agent.version:
                agent.version += 1
                agent.states = [(agent.version, agent.epoch, b"{}", node_id, datetime.now(UTC))]
            if keep is not None:
                del agent.states[:-keep]
            latest = agent.states[-1] if agent.states else None
            return Activation(
                epoch=agent.epoch, version=agent.version, state=latest[2] if latest else None,
                effects={k: v[0] for k, v in agent.effects.items()},
            )

    def commit(
        self, agent_id: str, epoch: int, version: int, state: bytes, *, node_id: str, keep: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        with self._lock:
            agent = self._owned(agent_id, epoch, f"state version {version}")
            agent.version = version
            agent.states.append((version, epoch, state, node_id, datetime.now(UTC)))
            del agent.states[:-keep]

    def record_effect(self, agent_id: str, epoch: int, key: str, outcome: bytes, *, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._owned(agent_id, epoch, f"effect {key!r}").effects[key] = (outcome, time.time())

    def forget_effect(self, agent_id: str, epoch: int, key: str, *, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._owned(agent_id, epoch, f"forgetting effect {key!r}").effects.pop(key, None)

    def read(self, agent_id: str, version: int | None = None) -> StateVersion | None:
        with self._lock:
            self._open(agent_id, "reading its state")
            agent = self._agents.get(agent_id)
            rows = [r for r in (agent.states if agent else []) if version is None or r[0] == version]
            return _version(agent_id, rows[-1]) if rows else None

    def versions(self, agent_id: str | None = None) -> list[StateVersion]:
        with self._lock:
            self._open(agent_id or "*", "reading states")
            items = [(a, self._agents[a]) for a in ([agent_id] if agent_id else sorted(self._agents))
                     if a in self._agents]
            return [_version(a, row) for a, agent in items for row in agent.states]

    def close(self) -> None:
        self._closed = True


def _version(agent_id: str, row: tuple[int, int, bytes, str, datetime]) -> StateVersion:
    version, epoch, data, node_id, at = row
    return StateVersion(agent_id, version, epoch, orjson.loads(data), len(data), node_id, at)
