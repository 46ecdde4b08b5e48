"""``PgTaskStore``: the ``TaskStore`` port over the journal's ``tasks`` table.

The table is the authority on what became of a task, and only nodes write
it (never from what a NATS message says):

- ``record``: the submitting node's ``queued`` (and a worker's ``retrying`` or
  ``dead`` before it took the task), one upsert. States are ranked
  (``queued`` < ``running``/``retrying`` < ``done``/``dead``) and a row never
  moves to a lower rank, so a late write cannot undo a later state; a
  ``done`` or ``dead`` row never changes again.
- ``claim``: a worker took the task (``running``), under a random token kept
  in ``claim_token``; a redelivery's claim replaces it.
- ``settle``: ``done`` (with the result), ``retrying`` or ``dead``, applied
  only while the row still holds that token, in the same statement.

Fields a transition does not carry keep their stored value. Runs on the pool's loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

__all__ = ["TASK_STATES", "PgTaskStore", "task_params"]

TASK_STATES = ("queued", "running", "retrying", "done", "dead")

_RANK = sql.SQL("CASE {} WHEN 'queued' THEN 0 WHEN 'running' THEN 1 WHEN 'retrying' THEN 1 ELSE 2 END")
_UPSERT = sql.SQL(
    """
    INSERT INTO tasks AS t (task_id, kind, priority, payload, state, attempts, agent_id, result, error, node_id)
    VALUES (%(task_id)s, %(kind)s, %(priority)s, %(payload)s, %(state)s, %(attempts)s, %(agent_id)s,
            %(result)s, %(error)s, %(node_id)s)
    ON CONFLICT (task_id) DO UPDATE SET
        kind = COALESCE(EXCLUDED.kind, t.kind),
        priority = COALESCE(EXCLUDED.priority, t.priority),
        payload = COALESCE(EXCLUDED.payload, t.payload),
        state = CASE WHEN {new_rank} >= {old_rank} THEN EXCLUDED.state ELSE t.state END,
        attempts = GREATEST(EXCLUDED.attempts, t.attempts),
        agent_id = COALESCE(EXCLUDED.agent_id, t.agent_id),
        result = COALESCE(EXCLUDED.result, t.result),
        error = COALESCE(EXCLUDED.error, t.error),
        node_id = COALESCE(EXCLUDED.node_id, t.node_id),
        updated_at = now()
    WHERE t.state NOT IN ('done', 'dead')
    """
).format(new_rank=_RANK.format(sql.SQL("EXCLUDED.state")), old_rank=_RANK.format(sql.SQL("t.state")))
_CLAIM = sql.SQL(
    """
    INSERT INTO tasks AS t (task_id, kind, state, attempts, agent_id, node_id, claim_token)
    VALUES (%(task_id)s, %(kind)s, 'running', %(attempts)s, %(agent_id)s, %(node_id)s, %(claim)s)
    ON CONFLICT (task_id) DO UPDATE SET
        kind = COALESCE(EXCLUDED.kind, t.kind),
        state = 'running',
        attempts = GREATEST(EXCLUDED.attempts, t.attempts),
        agent_id = EXCLUDED.agent_id,
        node_id = EXCLUDED.node_id,
        claim_token = EXCLUDED.claim_token,
        updated_at = now()
    WHERE t.state NOT IN ('done', 'dead')
    RETURNING task_id
    """
)
_SETTLE = sql.SQL(
    """
    UPDATE tasks SET
        state = %(state)s,
        attempts = GREATEST(%(attempts)s, attempts),
        agent_id = COALESCE(%(agent_id)s, agent_id),
        result = COALESCE(%(result)s, result),
        error = COALESCE(%(error)s, error),
        updated_at = now()
    WHERE task_id = %(task_id)s AND claim_token = %(claim)s AND state NOT IN ('done', 'dead')
    RETURNING task_id
    """
)
_COLUMNS = ("task_id", "kind", "priority", "payload", "state", "attempts", "agent_id", "result", "error", "node_id",
            "created_at", "updated_at")
_SELECT = sql.SQL("SELECT {} FROM tasks WHERE task_id = %s").format(
    sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)))


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def task_params(task_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The upsert's parameters from a tracker transition (pure)."""
    attempt = fields.get("attempt")
    return {
        "task_id": task_id,
        "kind": fields.get("kind") or fields.get("task_type"),
        "priority": fields.get("priority"),
        "payload": _json(fields.get("payload")),
        "state": str(fields.get("status") or "queued"),
        "attempts": attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
        "agent_id": fields.get("agent_id"),
        "result": _json(fields.get("result")) if fields.get("status") == "done" else None,
        "error": _json(fields.get("error")),
        "node_id": fields.get("node"),
    }


class PgTaskStore:
    """Implements ``mistersmith.ports.TaskStore``."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def record(self, task_id: str, fields: Mapping[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(_UPSERT, task_params(task_id, fields))

    async def claim(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_CLAIM, {**task_params(task_id, fields), "claim": claim})
            return await cur.fetchone() is not None

    async def settle(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool:
        params = task_params(task_id, fields)
        if params["state"] not in ("done", "retrying", "dead"):
            raise ValueError(f"settle {task_id} as done, retrying or dead, not {params['state']!r}")
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SETTLE, {**params, "claim": claim})
            return await cur.fetchone() is not None

    async def get(self, task_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SELECT, (task_id,))
            row = await cur.fetchone()
        if row is None:
            return None
        data = dict(zip(_COLUMNS, row, strict=True))
        out: dict[str, Any] = {"task_id": task_id, "status": data["state"]}
        for key in ("kind", "priority", "attempts", "agent_id", "result", "error"):
            if data[key] is not None:
                out[key] = data[key]
        if data["node_id"] is not None:
            out["node"] = data["node_id"]
        out["created_at"] = data["created_at"].isoformat()
        out["updated_at"] = data["updated_at"].isoformat()
        return out
