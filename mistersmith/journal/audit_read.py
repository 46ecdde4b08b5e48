"""Reading the audit trail back: ``read_audit`` (blocking, for the CLI) and ``PgAuditTrail`` (the
web's ``AuditTrail`` port, on the node's pool). Oldest first; filters by time, actor, action, door."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

__all__ = ["PgAuditTrail", "audit_query", "read_audit"]

_SELECT = ("seq", "audit_id", "at", "node_id", "actor", "door", "action", "target", "outcome", "detail", "trace_id")


def audit_query(*, since: datetime | None = None, actor: str | None = None, action: str | None = None,
                door: str | None = None, limit: int = 1000) -> tuple[sql.Composed, list[Any]]:
    """The statement and its parameters (bound, never formatted in)."""
    where: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("actor", actor), ("action", action), ("door", door)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if since is not None:
        where.append(sql.SQL("at >= %s"))
        params.append(since)
    query = sql.SQL("SELECT {} FROM audit_log").format(sql.SQL(", ").join(map(sql.Identifier, _SELECT)))
    if where:
        query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    params.append(limit)
    return query + sql.SQL(" ORDER BY at, seq LIMIT %s"), params


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_SELECT, row, strict=True))
    out["audit_id"] = str(out["audit_id"])
    out["at"] = out["at"].isoformat()
    return out


def read_audit(conninfo: str, *, since: datetime | None = None, actor: str | None = None,
               action: str | None = None, door: str | None = None, limit: int = 1000,
               connect_timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Audit entries (dicts), oldest first. Blocks: a plain thread (the CLI)."""
    query, params = audit_query(since=since, actor=actor, action=action, door=door, limit=limit)
    with psycopg.connect(conninfo, connect_timeout=max(1, round(connect_timeout_s))) as conn:
        return [_row(r) for r in conn.execute(query, params).fetchall()]


class PgAuditTrail:
    """The ``AuditTrail`` port over the node's pool (on its event loop)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def audit_entries(self, *, since: datetime | None, actor: str | None, action: str | None,
                            door: str | None, limit: int) -> list[dict[str, Any]]:
        query, params = audit_query(since=since, actor=actor, action=action, door=door, limit=limit)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [_row(r) for r in await cur.fetchall()]
