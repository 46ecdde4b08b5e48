"""The ``agents`` registry table: reading and writing ``AgentRecord`` rows.

The writer keeps it in the same transaction as the events it derives from
(see ``mistersmith.history.projection``); recovery reads it. Sync (psycopg) functions for the
writer's thread and async ones for the node's pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from mistersmith.history import AgentRecord, RecordKey

__all__ = ["aload_node", "delete_records", "load_node", "record_from_row", "upsert_records"]

_COLUMNS = (
    "node_id", "supervisor", "agent_id", "kind", "config", "restart", "spec", "desired_state",
    "state", "incarnation", "started_seq", "reason", "last_event", "last_seq", "updated_at",
)
_KEY = ("node_id", "supervisor", "agent_id")

_SELECT = sql.SQL("SELECT {} FROM agents WHERE node_id = %s ORDER BY started_seq").format(
    sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
)
_UPSERT = sql.SQL("INSERT INTO agents ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {sets}").format(
    cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
    vals=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
    key=sql.SQL(", ").join(map(sql.Identifier, _KEY)),
    sets=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _COLUMNS if c not in _KEY
    ),
)
_DELETE = sql.SQL("DELETE FROM agents WHERE node_id = %s AND supervisor = %s AND agent_id = %s")


def record_from_row(row: Sequence[Any]) -> AgentRecord:
    """A registry row (``_COLUMNS`` order) as a record."""
    (node_id, supervisor, agent_id, kind, _config, restart, spec, desired, state, incarnation,
     started_seq, reason, last_event, last_seq, updated_at) = row
    return AgentRecord(
        node_id=node_id, supervisor=supervisor, agent_id=agent_id, kind=kind, restart=restart,
        spec=dict(spec or {}), desired_state=desired, state=state, incarnation=incarnation,
        reason=reason, last_event=last_event, last_seq=last_seq, started_seq=started_seq, updated_at=updated_at,
    )


def _params(record: AgentRecord) -> tuple[Any, ...]:
    return (
        record.node_id, record.supervisor, record.agent_id, record.kind, Jsonb(record.config),
        record.restart, Jsonb(record.spec), record.desired_state, record.state, record.incarnation,
        record.started_seq, record.reason, record.last_event, record.last_seq, record.updated_at,
    )


def load_node(conn: psycopg.Connection[Any], node_id: str) -> list[AgentRecord]:
    """Every registry row of ``node_id``, in start order."""
    with conn.cursor() as cur:
        cur.execute(_SELECT, (node_id,))
        return [record_from_row(row) for row in cur.fetchall()]


async def aload_node(conn: psycopg.AsyncConnection[Any], node_id: str) -> list[AgentRecord]:
    """``load_node`` on an async connection."""
    async with conn.cursor() as cur:
        await cur.execute(_SELECT, (node_id,))
        return [record_from_row(row) for row in await cur.fetchall()]


def upsert_records(cur: psycopg.Cursor[Any], records: Iterable[AgentRecord]) -> None:
    params = [_params(r) for r in records]
    if params:
        cur.executemany(_UPSERT, params)


def delete_records(cur: psycopg.Cursor[Any], keys: Iterable[RecordKey]) -> None:
    params = list(keys)
    if params:
        cur.executemany(_DELETE, params)
