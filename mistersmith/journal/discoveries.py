"""``PgDiscoveryStore``: the ``DiscoveryStore`` port over the journal's ``discoveries`` table.

- ``persist`` inserts with ``ON CONFLICT (id) DO NOTHING`` and returns the
  row as stored: for an id stored before, the first row, unchanged
  (idempotent: a discovery echoed back by NATS, or stored by another node
  sharing the database, keeps its first ``seq``, content and ``source``; a
  NATS message that reuses a stored id overwrites nothing).
- Writers take a transaction-level advisory lock (``DISCOVERY_LOCK_KEY``)
  before inserting, so ``seq`` is commit order even with several nodes on one
  database: a reader that has seen ``seq`` n never later finds a row below n.
- ``load`` applies a ``DiscoveryFilter`` in SQL (bound parameters, built with
  ``psycopg.sql``), in ``seq`` order.

Runs on the event loop the pool was opened on (``journal.loop``: the node's
loop). Errors are psycopg's (``psycopg.OperationalError`` when the database is
down); the hub's caller sees them.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from mistersmith.discovery import Discovery, DiscoveryFilter

__all__ = ["DISCOVERY_LOCK_KEY", "PgDiscoveryStore", "discovery_from_row"]

DISCOVERY_LOCK_KEY = 0x4D53444953  # "MSDIS"

_COLUMNS = ("seq", "id", "agent_id", "agent_role", "discovery_type", "content", "confidence", "related_to",
            "occurred_at", "source")
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
_SELECT = sql.SQL("SELECT {} FROM discoveries").format(_COLUMN_LIST)
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
_INSERT = sql.SQL(
    """
    WITH inserted AS (
        INSERT INTO discoveries (id, agent_id, agent_role, discovery_type, content, confidence, related_to,
                                 occurred_at, source, node_id)
        VALUES (%(id)s, %(agent_id)s, %(agent_role)s, %(discovery_type)s, %(content)s, %(confidence)s,
                %(related_to)s, %(occurred_at)s, %(source)s, %(node_id)s)
        ON CONFLICT (id) DO NOTHING
        RETURNING {columns}
    )
    SELECT {columns} FROM inserted
    UNION ALL
    SELECT {columns} FROM discoveries WHERE id = %(id)s
    LIMIT 1
    """
).format(columns=_COLUMN_LIST)


def discovery_from_row(row: tuple[Any, ...]) -> Discovery:
    """A ``Discovery`` from a row of ``_COLUMNS``."""
    seq, id_, agent_id, role, dtype, content, confidence, related_to, occurred_at, source = row
    return Discovery(agent_id=agent_id, agent_role=role, discovery_type=dtype, content=content,
                     confidence=float(confidence), related_to=related_to, id=id_, occurred_at=occurred_at,
                     seq=int(seq), source=source)


def filter_query(flt: DiscoveryFilter, after_seq: int, limit: int) -> tuple[sql.Composed, dict[str, Any]]:
    """The SELECT for ``flt`` (pure; bound parameters only)."""
    where = [sql.SQL("seq > %(after_seq)s")]
    params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
    if flt.agent_id is not None:
        where.append(sql.SQL("agent_id <> %(agent_id)s" if flt.exclude_self else "agent_id = %(agent_id)s"))
        params["agent_id"] = flt.agent_id
    if flt.types is not None:
        where.append(sql.SQL("discovery_type = ANY(%(types)s)"))
        params["types"] = sorted(flt.types)
    if flt.min_confidence > 0:
        where.append(sql.SQL("confidence >= %(min_confidence)s"))
        params["min_confidence"] = flt.min_confidence
    query = sql.SQL("{} WHERE {} ORDER BY seq LIMIT %(limit)s").format(_SELECT, sql.SQL(" AND ").join(where))
    return query, params


class PgDiscoveryStore:
    """Implements ``mistersmith.ports.DiscoveryStore``; ``node_id`` is recorded on each row it stores."""

    def __init__(self, pool: AsyncConnectionPool, node_id: str) -> None:
        self.pool = pool
        self.node_id = node_id

    async def persist(self, discovery: Discovery) -> Discovery:
        params = {
            "id": discovery.id, "agent_id": discovery.agent_id, "agent_role": discovery.agent_role,
            "discovery_type": discovery.discovery_type, "content": discovery.content,
            "confidence": discovery.confidence, "related_to": discovery.related_to,
            "occurred_at": discovery.occurred_at, "source": discovery.source, "node_id": self.node_id,
        }
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (DISCOVERY_LOCK_KEY,))
            cur = await conn.execute(_INSERT, params)
            row = await cur.fetchone()
        if row is None:  # cannot happen: the row was inserted or already there
            raise RuntimeError(f"discovery {discovery.id} was neither stored nor found")
        return discovery_from_row(row)

    async def load(self, flt: DiscoveryFilter, *, after_seq: int, limit: int) -> list[Discovery]:
        query, params = filter_query(flt, after_seq, limit)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [discovery_from_row(row) for row in await cur.fetchall()]

    async def last_seq(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM discoveries")
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def get(self, discovery_id: str) -> Discovery | None:
        query = sql.SQL("{} WHERE id = %s").format(_SELECT)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, (discovery_id,))
            row = await cur.fetchone()
        return None if row is None else discovery_from_row(row)
