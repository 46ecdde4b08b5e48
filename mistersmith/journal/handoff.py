"""Handoff: a draining node gives its units to other nodes, through PostgreSQL.

The giver has already stopped the unit (its agents' ``stopped`` events say
``shutdown: handed over ...``, which keeps them wanted) and shipped its
journal, so its registry rows are current. Then, in one transaction
(``hand_over``): the unit's registry rows move to the taker, its agent ids move
to the taker in ``agent_owners`` (epoch bumped; only ids the giver still owns),
and a ``handoffs`` row names the unit. The taker, in its next round
(``take_handoffs``), starts those units from the rows it now holds, as a
takeover would (``Adoption``), then deletes its ``handoffs`` rows
(``done_handoffs``): the giver's drain returns once none is left. A unit never runs on
two nodes: the giver stopped it before anyone could start it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from mistersmith.history import plan_recovery

from .registry import _COLUMNS, record_from_row
from .takeover import Adoption, unit_of

__all__ = ["done_handoffs", "hand_over", "pending_from", "take_handoffs"]

_UNIT = "(supervisor || '/' || agent_id = %(unit)s OR supervisor = %(unit)s OR supervisor LIKE %(below)s)"
_MOVE_ROWS = f"UPDATE agents SET node_id = %(to)s WHERE node_id = %(from)s AND {_UNIT} RETURNING agent_id, kind"
_MOVE_IDS = """
UPDATE agent_owners SET node_id = %(to)s, run_id = NULL, epoch = epoch + 1, released = false, since = now()
WHERE agent_id = ANY(%(ids)s) AND node_id = %(from)s
"""
_MARK = """
INSERT INTO handoffs (path, from_node, to_node) VALUES (%(unit)s, %(from)s, %(to)s)
ON CONFLICT (path) DO UPDATE SET from_node = EXCLUDED.from_node, to_node = EXCLUDED.to_node, handed_at = now()
"""
_TAKE = "SELECT path, from_node FROM handoffs WHERE to_node = %s ORDER BY handed_at, path"
_DONE = "DELETE FROM handoffs WHERE to_node = %s AND path = ANY(%s)"
_ROWS = f"SELECT {', '.join(_COLUMNS)} FROM agents WHERE node_id = %(to)s AND {_UNIT} ORDER BY started_seq"
_EPOCHS = "SELECT agent_id, epoch FROM agent_owners WHERE agent_id = ANY(%s) AND node_id = %s"
_PENDING = "SELECT count(*) FROM handoffs WHERE from_node = %s"


def _where(unit: str, **more: str) -> dict[str, str]:
    return {"unit": unit, "below": unit.replace("%", r"\%") + "/%", **more}


def hand_over(conn: psycopg.Connection[Any], unit: str, from_node: str, to_node: str) -> int:
    """Give ``unit`` (``root/<id>``) of ``from_node`` to ``to_node``; returns the rows moved (0: nothing here)."""
    params = _where(unit, **{"from": from_node, "to": to_node})
    with conn.transaction():
        moved = conn.execute(_MOVE_ROWS, params).fetchall()
        if not moved:
            return 0
        ids = [agent_id for agent_id, kind in moved if kind != "supervisor"]
        if ids:
            conn.execute(_MOVE_IDS, {**params, "ids": ids})
        conn.execute(_MARK, params)
    return len(moved)


def take_handoffs(conn: psycopg.Connection[Any], me: str) -> list[Adoption]:
    """The units handed to ``me``, to start (parents first); ``done_handoffs`` deletes their rows once
    they run (the giver waits for that)."""
    adoptions: list[Adoption] = []
    with conn.transaction():
        for unit, from_node in conn.execute(_TAKE, (me,)).fetchall():
            records = [record_from_row(r) for r in conn.execute(_ROWS, _where(unit, to=me)).fetchall()]
            plan = plan_recovery(records)
            respawn = tuple(r for r in plan.respawn if unit_of(r) == unit)
            ids = [r.agent_id for r in respawn if not r.is_supervisor]
            epochs = {a: int(e) for a, e in conn.execute(_EPOCHS, (ids, me)).fetchall()} if ids else {}
            adoptions.append(Adoption(from_node, unit, respawn, tuple(plan.leave), epochs))
    return adoptions


def done_handoffs(conn: psycopg.Connection[Any], me: str, paths: list[str]) -> None:
    """The taker started these units: the giver's wait is over."""
    if paths:
        conn.execute(_DONE, (me, paths))


def pending_from(conn: psycopg.Connection[Any], node_id: str) -> int:
    """Units ``node_id`` handed over that their taker has not started yet."""
    row = conn.execute(_PENDING, (node_id,)).fetchone()
    return int(row[0]) if row else 0
