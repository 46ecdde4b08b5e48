"""The ``StateStore`` port: where durable agents keep their state, their effect records and their epochs.

Every method blocks and is called from agent threads (any number at once) or
from plain threads; a store is thread-safe. States and outcomes travel as the
JSON bytes ``codec.encode_state`` made; what a store returns is the same JSON
value, not always the same bytes (PostgreSQL's jsonb re-formats it), so readers decode.

The rules every store keeps (the contract suite checks them):

- ``activate`` takes a new **epoch** for the agent (one more than the last, 1 the
  first time) and returns what the agent resumes from: its last committed state
  (version and bytes) and its effect records. From then on a write carrying an
  older epoch is refused with ``FencedError``, in the same atomic step as the
  write (never a read and then a write).
- ``commit`` makes version ``version`` of the state durable before it returns;
  versions only grow. ``keep`` versions are kept (the newest ones).
- ``record_effect`` makes an effect's outcome durable before it returns; a key
  recorded once is returned by every later ``activate``.
- A write that cannot be made durable within ``timeout_s`` raises
  ``StateUnavailableError`` and is **not** applied later: a failed call changed
  nothing. (When the store cannot tell, it raises ``StateUnavailableError`` with
  ``outcome_unknown`` set; the agent then ends its incarnation, so the next one
  reads the truth.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["Activation", "StateStore", "StateVersion"]


@dataclass(frozen=True)
class Activation:
    """What a new activation of a durable agent starts from."""

    epoch: int
    version: int
    """The last committed version (0: nothing committed yet)."""
    state: bytes | None
    """Its JSON (None when ``version`` is 0)."""
    effects: Mapping[str, bytes] = field(default_factory=dict)
    """Recorded effect outcomes by key (JSON of ``{"value": ...}`` or ``{"error": {...}}``)."""


@dataclass(frozen=True)
class StateVersion:
    """One committed version of an agent's state, as read back."""

    agent_id: str
    version: int
    epoch: int
    state: dict[str, Any]
    bytes: int
    node_id: str
    committed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "version": self.version, "epoch": self.epoch, "state": self.state,
                "bytes": self.bytes, "node_id": self.node_id, "committed_at": self.committed_at.isoformat()}


@runtime_checkable
class StateStore(Protocol):
    """Durable state, effect records and ownership epochs (see the module docstring)."""

    def activate(
        self, agent_id: str, node_id: str, *, reset: bool = False, effect_retention_s: float | None = None,
        keep: int | None = None,
    ) -> Activation:
        """Take a new epoch for ``agent_id`` on ``node_id`` and return what it resumes from.

        ``reset``: OTP's fresh start; if a state was committed, an empty one (``{}``) is committed
        as the next version under the new epoch, and the activation says so (``state`` is ``b"{}"``).
        ``effect_retention_s``: effect records older than this are forgotten first; ``keep``: versions
        older than the newest ``keep`` are pruned (a lowered ``state_history`` takes effect here; a
        commit prunes only the one version it pushes out).
        Raises ``StateUnavailableError`` if the store cannot be reached.
        """
        ...

    def commit(
        self, agent_id: str, epoch: int, version: int, state: bytes, *, node_id: str, keep: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        """Make ``state`` version ``version`` durable, or raise ``FencedError`` / ``StateUnavailableError``."""
        ...

    def record_effect(self, agent_id: str, epoch: int, key: str, outcome: bytes, *, timeout_s: float = 5.0) -> None:
        """Make one effect outcome durable, or raise ``FencedError`` / ``StateUnavailableError``."""
        ...

    def forget_effect(self, agent_id: str, epoch: int, key: str, *, timeout_s: float = 5.0) -> None:
        """Drop one effect record (its ``fn`` runs again next time); fenced like a write."""
        ...

    def read(self, agent_id: str, version: int | None = None) -> StateVersion | None:
        """The newest committed version (or version ``version``) still kept, or None."""
        ...

    def versions(self, agent_id: str | None = None) -> list[StateVersion]:
        """Every version still kept (of one agent, or all), oldest first."""
        ...

    def close(self) -> None:
        """Release connections and threads; later calls raise ``StateUnavailableError``."""
        ...
