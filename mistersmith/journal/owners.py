"""``PgOwners``: which node owns each agent id across a cluster (``agent_owners``, migrations 004-005).

The supervisors' ``Owners`` port: a node claims an id before it starts the agent
and releases it when the agent is given up on purpose. One statement each:

- ``claim``: an upsert that takes the row only if it is this node's already (a
  restart, a recovery) or was released; otherwise ``AgentExistsError`` names
  the owner and, if it is not up, its state: an id a down node still holds is
  not free until that node's agents are taken over (``takeover.py``) or released.
- ``release``: marks the row released, only if this node owns it (a fenced
  agent's id, owned elsewhere now, is left alone).

The epoch is not touched here: a durable agent's activation takes it
(``states.py``), and a takeover bumps it. Blocking; any thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from mistersmith.errors import AgentExistsError, StateUnavailableError

__all__ = ["PgOwners"]

_CLAIM = """
INSERT INTO agent_owners AS o (agent_id, node_id, epoch, run_id) VALUES (%(agent_id)s, %(node_id)s, 0, %(run_id)s)
ON CONFLICT (agent_id) DO UPDATE SET node_id = EXCLUDED.node_id, run_id = EXCLUDED.run_id, released = false,
    since = now()
WHERE o.node_id = EXCLUDED.node_id OR o.released
RETURNING node_id
"""
_OWNER = """
SELECT o.node_id, n.state FROM agent_owners o LEFT JOIN nodes n ON n.node_id = o.node_id WHERE o.agent_id = %s
"""
_RELEASE = "UPDATE agent_owners SET released = true, since = now() WHERE agent_id = %s AND node_id = %s"


class PgOwners:
    """Implements ``mistersmith.supervisors.Owners`` for ``node_id`` (its current ``run_id`` from ``run``)."""

    def __init__(self, conninfo: str, node_id: str, *, run: Any = None, connect_timeout_s: float = 5.0) -> None:
        self.node_id = node_id
        self._run = run  # an object with a ``run_id`` (the node's lease), read at each claim
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo, min_size=1, max_size=2, timeout=connect_timeout_s, reconnect_timeout=connect_timeout_s,
            open=False, kwargs={"autocommit": True, "connect_timeout": max(2, round(connect_timeout_s)),
                                "application_name": "mistersmith-owners"},
            check=ConnectionPool.check_connection, name="mistersmith-owners",
        )
        self._pool.open(wait=False)

    def claim(self, agent_id: str) -> None:
        params = {"agent_id": agent_id, "node_id": self.node_id, "run_id": getattr(self._run, "run_id", None)}
        with self._connection(agent_id, "claiming its id") as conn:
            if conn.execute(_CLAIM, params).fetchone() is not None:
                return
            row = conn.execute(_OWNER, (agent_id,)).fetchone()
        owner, state = (row[0], row[1]) if row else (None, None)
        raise AgentExistsError(agent_id, owner, state or "unknown")

    def release(self, agent_id: str) -> None:
        with self._connection(agent_id, "releasing its id") as conn:
            conn.execute(_RELEASE, (agent_id, self.node_id))

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self, agent_id: str, what: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:  # the pool's wait (PoolTimeout) happens on entering
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StateUnavailableError(agent_id, what, f"PostgreSQL unreachable: {str(exc).strip()}") from exc
