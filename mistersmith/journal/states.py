"""``PgStateStore``: the ``StateStore`` port (``mistersmith.state.store``) over PostgreSQL (migration 004).

Every method blocks and may be called from any number of plain threads at once.

- ``commit`` and ``record_effect`` go through the group-commit thread
  (``state_writer.py``): one transaction for every pending write, fenced in the
  same statement, durable before the call returns. A write that cannot be made
  durable within its ``timeout_s`` raises ``StateUnavailableError`` and is never
  applied later (``outcome_unknown`` when it was already sent and its
  transaction's fate could not be learned).
- ``activate``, ``forget_effect``, ``read`` and ``versions`` run in the calling
  thread on a connection from a ``psycopg_pool.ConnectionPool``. ``activate`` is
  one transaction: it bumps the epoch first (an upsert that row-locks
  ``agent_owners``, so it waits for a write in flight on that agent and then sees
  it), then reads the newest state and the effect records in statements of
  their own (READ COMMITTED: a fresh snapshot taken after the lock).
- While PostgreSQL is unreachable each call raises ``StateUnavailableError``
  within about ``connect_timeout_s`` (its ``timeout_s`` for a write).
- ``close()`` fails what is pending ("the state store is closed"), stops the
  thread, closes the pool; later calls raise ``StateUnavailableError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from mistersmith.errors import FencedError, StateUnavailableError
from mistersmith.state.store import Activation, StateVersion

from .state_writer import CLOSED, COMMIT, EFFECT, Request, StateWriter

__all__ = ["PgStateStore"]

logger = logging.getLogger("mistersmith.journal.states")

_TAKE_EPOCH = """
INSERT INTO agent_owners AS o (agent_id, node_id, epoch) VALUES (%s, %s, 1)
ON CONFLICT (agent_id) DO UPDATE SET epoch = o.epoch + 1, node_id = EXCLUDED.node_id, since = now()
RETURNING epoch, version
"""
_EXPIRE_EFFECTS = "DELETE FROM agent_effects WHERE agent_id = %s AND recorded_at < now() - make_interval(secs => %s)"
_NEWEST_STATE = "SELECT state::text FROM agent_states WHERE agent_id = %s ORDER BY version DESC LIMIT 1"
_EFFECTS = "SELECT key, outcome::text FROM agent_effects WHERE agent_id = %s"
_PRUNE = """
WITH d AS (DELETE FROM agent_states WHERE agent_id = %(agent_id)s AND version <= %(below)s)
UPDATE agent_owners SET oldest = GREATEST(oldest, %(below)s + 1) WHERE agent_id = %(agent_id)s
"""
_TAKE_EPOCHS = """
INSERT INTO agent_owners AS o (agent_id, node_id, epoch) SELECT id, %s, 1 FROM unnest(%b::text[]) AS id
ON CONFLICT (agent_id) DO UPDATE SET epoch = o.epoch + 1, node_id = EXCLUDED.node_id, since = now()
WHERE o.node_id = EXCLUDED.node_id OR o.released
RETURNING agent_id, epoch, version
"""
_NEWEST_STATES = """
SELECT DISTINCT ON (agent_id) agent_id, state::text FROM agent_states WHERE agent_id = ANY(%b::text[])
ORDER BY agent_id, version DESC
"""
_ALL_EFFECTS = """
SELECT agent_id, key, outcome::text, extract(epoch FROM now() - recorded_at) FROM agent_effects
WHERE agent_id = ANY(%b::text[])
"""
_PREFETCH_TTL_S = 60.0
_RESET = """
WITH i AS (INSERT INTO agent_states (agent_id, version, epoch, state, bytes, node_id)
           VALUES (%(agent_id)s, %(version)s, %(epoch)s, '{}', 2, %(node_id)s)),
d AS (DELETE FROM agent_states WHERE agent_id = %(agent_id)s AND version < %(version)s)
UPDATE agent_owners SET version = %(version)s, oldest = %(version)s WHERE agent_id = %(agent_id)s
"""
_FORGET = """
WITH o AS (SELECT agent_id FROM agent_owners WHERE agent_id = %(agent_id)s AND epoch = %(epoch)s FOR SHARE),
d AS (DELETE FROM agent_effects AS e USING o WHERE e.agent_id = o.agent_id AND e.key = %(key)s)
SELECT count(*) FROM o
"""
_COLUMNS = "SELECT agent_id, version, epoch, state, bytes, node_id, committed_at FROM agent_states"
_NEWEST = _COLUMNS + " WHERE agent_id = %s ORDER BY version DESC LIMIT 1"
_VERSION = _COLUMNS + " WHERE agent_id = %s AND version = %s"
_AGENT_VERSIONS = _COLUMNS + " WHERE agent_id = %s ORDER BY version"
_ALL_VERSIONS = _COLUMNS + " ORDER BY agent_id, version"


def _configure(conn: psycopg.Connection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


def _version(row: dict[str, Any]) -> StateVersion:
    return StateVersion(row["agent_id"], row["version"], row["epoch"], row["state"], row["bytes"], row["node_id"],
                        row["committed_at"])


class PgStateStore:
    """Implements ``mistersmith.state.StateStore`` on the database at ``conninfo`` (see the module docstring).

    ``pool_size``: connections for activations and reads (the writer has one more of its own);
    ``connect_timeout_s``: how long a call waits for a connection before ``StateUnavailableError``;
    ``max_batch``: the most writes one group-commit transaction takes.
    """

    def __init__(self, conninfo: str, *, pool_size: int = 4, connect_timeout_s: float = 5.0,
                 max_batch: int = 1000) -> None:
        for name, value in (("pool_size", pool_size), ("max_batch", max_batch)):
            if value < 1:
                raise ValueError(f"PgStateStore {name} must be at least 1, not {value!r}")
        if connect_timeout_s <= 0:
            raise ValueError(f"PgStateStore connect_timeout_s must be positive, not {connect_timeout_s!r}")
        self.connect_timeout_s = connect_timeout_s
        self._conninfo = conninfo
        self._closed = False
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            # reconnect_timeout: a failed connection attempt is given up soon, so the first call after an
            # outage connects at once instead of waiting out the pool's exponential backoff.
            conninfo, min_size=1, max_size=pool_size, timeout=connect_timeout_s, reconnect_timeout=connect_timeout_s,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(2, round(connect_timeout_s)),
                    "application_name": "mistersmith-state"},
            configure=_configure, check=ConnectionPool.check_connection, name="mistersmith-state",
        )
        self._pool.open(wait=False)
        # agent id -> (activation, each effect's age in s, taken at); see ``prefetch``
        self._prefetched: dict[str, tuple[Activation, dict[str, float], float]] = {}
        self._writer = StateWriter(conninfo, max_batch=max_batch, connect_timeout_s=connect_timeout_s)

    # -- the pool's calls ---------------------------------------------------------------------

    @contextmanager
    def _connection(self, agent_id: str, what: str, timeout_s: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StateUnavailableError(agent_id, what, CLOSED)
        try:
            with self._pool.connection(timeout=timeout_s or self.connect_timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            # Right after an outage the pool may still be backing off its reconnections: one
            # connection of our own, for this call, before saying PostgreSQL is unreachable.
            try:
                own = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(2, round(self.connect_timeout_s)),
                                      application_name="mistersmith-state")
            except psycopg.OperationalError:
                raise StateUnavailableError(agent_id, what, f"PostgreSQL unreachable: {str(exc).strip()}") from exc
            with own:
                _configure(own)
                yield own
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StateUnavailableError(agent_id, what, f"PostgreSQL failed: {str(exc).strip()}") from exc

    # -- the port -------------------------------------------------------------------------------

    def activate(
        self, agent_id: str, node_id: str, *, reset: bool = False, effect_retention_s: float | None = None,
        keep: int | None = None,
    ) -> Activation:
        early = self._prefetched.pop(agent_id, None)
        if early is not None and not reset and time.monotonic() - early[2] < _PREFETCH_TTL_S:
            act, ages, _ = early
            kept = {k: v for k, v in act.effects.items()
                    if effect_retention_s is None or ages[k] <= effect_retention_s}
            return Activation(act.epoch, act.version, act.state, kept)
        with self._connection(agent_id, "its activation") as conn, conn.transaction():
            row = conn.execute(_TAKE_EPOCH, (agent_id, node_id)).fetchone()
            assert row is not None  # an upsert with RETURNING returns its row
            epoch, version = int(row[0]), int(row[1])
            if effect_retention_s is not None:
                conn.execute(_EXPIRE_EFFECTS, (agent_id, effect_retention_s))
            if reset and version > 0:
                version += 1
                conn.execute(_RESET, {"agent_id": agent_id, "version": version, "epoch": epoch, "node_id": node_id})
                state: bytes | None = b"{}"
            else:
                newest = conn.execute(_NEWEST_STATE, (agent_id,)).fetchone() if version > 0 else None
                state = newest[0].encode("utf-8") if newest is not None else None
            if keep is not None and version > keep:
                conn.execute(_PRUNE, {"agent_id": agent_id, "below": version - keep})
            effects = {str(k): str(v).encode("utf-8") for k, v in conn.execute(_EFFECTS, (agent_id,))}
        return Activation(epoch=epoch, version=version, state=state, effects=effects)

    def prefetch(self, agent_ids: list[str], node_id: str) -> None:
        """Take the epochs of many activations to come, and read what they resume from, in one
        transaction of three statements (a recovery or takeover of many durable agents): each
        ``activate`` of one of them within a minute, without ``reset``, returns what was read here
        (effect records past their retention are left out then, and deleted at a later activation).
        An epoch taken here and never used is harmless: epochs only need to grow. An id another
        node owns now (a takeover) is left alone here: its owner claim refuses it next."""
        if not agent_ids:
            return
        with self._connection(agent_ids[0], f"activating {len(agent_ids)} agents") as conn, conn.transaction():
            owners = {a: (int(e), int(v)) for a, e, v in conn.execute(_TAKE_EPOCHS, (node_id, agent_ids))}
            states = {a: s.encode("utf-8") for a, s in conn.execute(_NEWEST_STATES, (agent_ids,))}
            effects: dict[str, dict[str, tuple[bytes, float]]] = {}
            for a, key, outcome, age in conn.execute(_ALL_EFFECTS, (agent_ids,)):
                effects.setdefault(a, {})[str(key)] = (str(outcome).encode("utf-8"), float(age))
        now = time.monotonic()
        for agent_id, (epoch, version) in owners.items():
            mine = effects.get(agent_id, {})
            act = Activation(epoch, version, states.get(agent_id) if version else None,
                             {k: v[0] for k, v in mine.items()})
            self._prefetched[agent_id] = (act, {k: v[1] for k, v in mine.items()}, now)

    def commit(
        self, agent_id: str, epoch: int, version: int, state: bytes, *, node_id: str, keep: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep!r}")
        what = f"state version {version}"
        self._open(agent_id, what)
        self._writer.submit(Request(COMMIT, agent_id, epoch, what, version=version, state=state.decode("utf-8"),
                                    bytes=len(state), keep=keep, node_id=node_id), timeout_s)

    def record_effect(self, agent_id: str, epoch: int, key: str, outcome: bytes, *, timeout_s: float = 5.0) -> None:
        what = f"effect {key!r}"
        self._open(agent_id, what)
        self._writer.submit(Request(EFFECT, agent_id, epoch, what, key=key, outcome=outcome.decode("utf-8")),
                            timeout_s)

    def forget_effect(self, agent_id: str, epoch: int, key: str, *, timeout_s: float = 5.0) -> None:
        params = {"agent_id": agent_id, "epoch": epoch, "key": key}
        with self._connection(agent_id, f"forgetting effect {key!r}", timeout_s) as conn:
            row = conn.execute(_FORGET, params).fetchone()
        if row is None or row[0] == 0:
            raise FencedError(agent_id, epoch)

    def read(self, agent_id: str, version: int | None = None) -> StateVersion | None:
        query, params = (_NEWEST, (agent_id,)) if version is None else (_VERSION, (agent_id, version))
        with self._connection(agent_id, "reading its state") as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query, params).fetchone()
        return _version(row) if row is not None else None

    def versions(self, agent_id: str | None = None) -> list[StateVersion]:
        query, params = (_ALL_VERSIONS, ()) if agent_id is None else (_AGENT_VERSIONS, (agent_id,))
        with self._connection(agent_id or "*", "reading its versions") as conn, \
                conn.cursor(row_factory=dict_row) as cur:
            return [_version(row) for row in cur.execute(query, params)]

    def close(self) -> None:
        """Fail pending writes, stop the writer (the batch in flight finishes), close the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close(timeout_s=2 * self.connect_timeout_s + 10.0)
        finally:
            self._pool.close()

    def stats(self) -> dict[str, Any]:
        """The writer's counters (commits, batches, mean_batch_size, connected, pending...) and the pool's."""
        return {**self._writer.stats(), "closed": self._closed, "pool": dict(self._pool.get_stats())}

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> bool:
        """Wait until ``predicate`` holds of the writer's stats (re-checked at each change); False on timeout."""
        return self._writer.wait_for(predicate, timeout_s)

    def _open(self, agent_id: str, what: str) -> None:
        if self._closed:
            raise StateUnavailableError(agent_id, what, CLOSED)
