"""Durable agent state: the ``StateStore`` port, its codec, and the stores that need no server.

A durable agent's ``self.state`` (a JSON-compatible dict) and the outcomes of its
``self.effect(key, fn)`` calls are kept in a ``StateStore``:

- ``MemoryStateStore`` (``memory``): the same semantics across restarts within one process
  (the default of a bare ``Runtime()``);
- ``SqliteStateStore`` (``sqlite``): across processes on one machine, in one SQLite file;
- ``PgStateStore`` (``mistersmith.journal.states``): what a node uses, in its PostgreSQL.

Every store passes one contract suite (``tests/state/test_state_contract.py``).
"""

from mistersmith.state.codec import encode_state
from mistersmith.state.memory import MemoryStateStore
from mistersmith.state.sqlite import SqliteStateStore
from mistersmith.state.store import Activation, StateStore, StateVersion

__all__ = ["Activation", "MemoryStateStore", "SqliteStateStore", "StateStore", "StateVersion", "encode_state"]
