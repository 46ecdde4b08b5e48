"""Takeover: the agents of nodes that are down, claimed by the survivors, each exactly once.

What comes back is decided by OTP's rules, as a node's own recovery decides
(``mistersmith.history.plan_recovery`` over the lost node's registry rows):
permanent agents, transient ones that had not ended normally; never temporary
ones, never those stopped on purpose.

**Units.** A top-level child of the root moves whole: an agent alone, or a
user supervisor with every descendant (``unit_of``); the task pools
(``NODE_LOCAL``) are each node's own and never move. A unit is claimed in one
transaction:

1. the lost node's registry rows of the unit are locked ``FOR UPDATE NOWAIT``,
   in start order (a survivor already on it is skipped, not waited for: a row
   of the unit already locked means the whole unit is another's);
2. each of its agent ids moves to this node in ``agent_owners`` with one
   conditional ``UPDATE ... WHERE node_id = <lost node> AND NOT released``,
   its epoch bumped (an id never owned is inserted); an id another node owns
   now, or released, is not taken, and its stale row is dropped;
3. the rows leave the lost node and become this node's, so that if this node
   dies before the agents are running again, its own successor adopts them.

Only ids owned by the run that was declared down are taken (the UPDATE checks
the row's ``run_id``, which PostgreSQL re-checks after any lock wait): if the
lost node came back meanwhile and recovered an agent under its new run, the
whole unit is left to it (the transaction rolls back).

**Spread.** Units are dealt round-robin over the up nodes, least loaded first
(``nodes.agents``, then id), skipping nodes at their ``max_agents``; each node
claims only its own share, so no two nodes contend. What a node could not
take (it is full, or died) is dealt again in the next round.

Runs in the caller's thread on its own connection (the node's takeover thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from mistersmith.history import AgentRecord, plan_recovery

from .registry import _COLUMNS, record_from_row, upsert_records

__all__ = ["NODE_LOCAL", "Adoption", "Unit", "claim_unit", "claim_units", "deal", "lost_units", "unit_of", "up_nodes"]

NODE_LOCAL = ("root/tasks",)
"""Units that belong to a node, not to the cluster: the task queue's per-kind pools (every node has
its own, ``mistersmith.bridge.task_agents``). They never move."""

_LOST_ROWS = (
    f"SELECT n.run_id, extract(epoch FROM now() - n.down_at), {', '.join('a.' + c for c in _COLUMNS)} "
    "FROM agents a JOIN nodes n ON n.node_id = a.node_id "
    "WHERE n.state = 'down' ORDER BY a.node_id, a.started_seq"
)
_UP = """
SELECT node_id, agents, max_agents FROM nodes WHERE state = 'up' AND lease_until > now() ORDER BY agents, node_id
"""
_LOCK = (
    f"SELECT {', '.join(_COLUMNS)} FROM agents WHERE node_id = %(node)s AND (supervisor || '/' || agent_id = %(unit)s "
    "OR supervisor = %(unit)s OR supervisor LIKE %(below)s) ORDER BY started_seq FOR UPDATE NOWAIT"
)
_TAKE = """
UPDATE agent_owners SET node_id = %(me)s, run_id = %(run)s, epoch = epoch + 1, released = false, since = now()
WHERE agent_id = ANY(%(ids)s) AND node_id = %(lost)s AND NOT released
    AND (run_id IS NULL OR run_id = %(lost_run)s)
RETURNING agent_id, epoch
"""
_STILL_THEIRS = """
SELECT agent_id FROM agent_owners WHERE agent_id = ANY(%(ids)s) AND node_id = %(lost)s AND NOT released
"""
_NEW = """
INSERT INTO agent_owners (agent_id, node_id, epoch, run_id)
SELECT id, %(me)s, 0, %(run)s FROM unnest(%(ids)s::text[]) AS id
ON CONFLICT (agent_id) DO NOTHING
RETURNING agent_id, epoch
"""
_RELEASE = """
UPDATE agent_owners SET released = true, since = now() WHERE agent_id = ANY(%(ids)s) AND node_id = %(lost)s
"""
_LEAVE = """
DELETE FROM agents WHERE node_id = %(node)s AND (supervisor || '/' || agent_id = %(unit)s OR supervisor = %(unit)s
    OR supervisor LIKE %(below)s)
"""


def unit_of(record: AgentRecord) -> str:
    """The top-level child of the root a record belongs to (``root/a1``, ``root/workers``)."""
    return "/".join(record.path.split("/")[:2])


@dataclass(frozen=True)
class Unit:
    """One top-level child of a lost node, with what should come back of it (parents first)."""

    node_id: str
    path: str
    respawn: tuple[AgentRecord, ...]
    leave: tuple[tuple[AgentRecord, str], ...]
    run_id: str = ""
    """The run of the lost node that was declared down: only ids that run owned are taken."""
    down_s: float = 0.0
    """How long ago (the database's clock) its node was declared down."""

    @property
    def agents(self) -> int:
        return sum(1 for r in self.respawn if not r.is_supervisor)


@dataclass(frozen=True)
class Adoption:
    """A unit this node claimed: the records (now this node's) and each agent's new epoch."""

    from_node: str
    path: str
    respawn: tuple[AgentRecord, ...]
    leave: tuple[tuple[AgentRecord, str], ...]
    epochs: dict[str, int]


def lost_units(conn: psycopg.Connection[Any]) -> list[Unit]:
    """Every unit of every node that is down, in a stable order."""
    by_node: dict[str, list[AgentRecord]] = {}
    runs: dict[str, tuple[str, float]] = {}
    for row in conn.execute(_LOST_ROWS).fetchall():
        record = record_from_row(row[2:])
        runs[record.node_id] = (row[0], float(row[1] or 0.0))
        by_node.setdefault(record.node_id, []).append(record)
    units: list[Unit] = []
    for node_id, records in sorted(by_node.items()):
        plan = plan_recovery(records)
        paths = sorted({unit_of(r) for r in records if r.supervisor} - set(NODE_LOCAL))
        for path in paths:
            units.append(Unit(node_id, path, tuple(r for r in plan.respawn if unit_of(r) == path),
                              tuple((r, why) for r, why in plan.leave if unit_of(r) == path), *runs[node_id]))
    return units


def up_nodes(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int | None]]:
    """``(node_id, agents, max_agents)`` of each node that is up, least loaded first."""
    return [(str(n), int(a), m) for n, a, m in conn.execute(_UP).fetchall()]


def deal(units: Sequence[Unit], nodes: Sequence[tuple[str, int, int | None]]) -> dict[str, list[Unit]]:
    """Units dealt over ``nodes`` (least loaded first), each within its ``max_agents``. Pure."""
    load = {n: a for n, a, _ in nodes}
    room = {n: (m - a if m is not None else None) for n, a, m in nodes}
    out: dict[str, list[Unit]] = {n: [] for n, _, _ in nodes}
    for unit in units:
        open_ = [n for n, _, _ in nodes if room[n] is None or room[n] >= unit.agents]  # type: ignore[operator]
        if not open_:
            continue
        target = min(open_, key=lambda n: (load[n], n))
        out[target].append(unit)
        load[target] += unit.agents
        if room[target] is not None:
            room[target] -= unit.agents  # type: ignore[operator]
    return out


def claim_unit(conn: psycopg.Connection[Any], unit: Unit, me: str, run_id: str) -> Adoption | None:
    """Claim one unit for node ``me`` in one transaction; None if another survivor holds it."""
    where = {"node": unit.node_id, "unit": unit.path, "below": unit.path.replace("%", r"\%") + "/%"}
    try:
        return _claim(conn, unit, me, run_id, where)
    except (_Untouched, psycopg.errors.LockNotAvailable):  # rolled back: the unit is not ours to take
        return None


def claim_units(conn: psycopg.Connection[Any], units: Sequence[Unit], me: str, run_id: str) -> list[Adoption]:
    """Claim many units in one transaction (one commit), each in a savepoint of its own: a unit
    another survivor holds is rolled back alone. The claims that held, in ``units``' order."""
    out: list[Adoption] = []
    with conn.transaction():
        for unit in units:
            adoption = claim_unit(conn, unit, me, run_id)  # its transaction is a savepoint here
            if adoption is not None:
                out.append(adoption)
    return out


class _Untouched(Exception):
    """Raised inside the claim's transaction to roll it back: the unit is not ours to take."""


def _claim(conn: psycopg.Connection[Any], unit: Unit, me: str, run_id: str, where: dict[str, str]) -> Adoption | None:
    with conn.transaction():
        rows = conn.execute(_LOCK, where).fetchall()
        if not rows:
            return None
        ids = [r.agent_id for r in unit.respawn if not r.is_supervisor]
        epochs: dict[str, int] = {}
        if ids:
            params = {"me": me, "run": run_id, "ids": ids, "lost": unit.node_id, "lost_run": unit.run_id}
            epochs.update({a: int(e) for a, e in conn.execute(_TAKE, params).fetchall()})
            epochs.update({a: int(e) for a, e in conn.execute(_NEW, params).fetchall()})
            if conn.execute(_STILL_THEIRS, params).fetchone() is not None:
                # The lost node came back and runs (part of) this unit under a newer run: leave it be.
                raise _Untouched
        gone = [r.agent_id for r, _ in unit.leave if not r.is_supervisor]
        gone = [r.agent_id for r, _ in unit.leave if not r.is_supervisor]
        if gone:  # not coming back by their restart type: their ids are free again
            conn.execute(_RELEASE, {"ids": gone, "lost": unit.node_id})
        conn.execute(_LEAVE, where)
        ours = tuple(_moved(r, me) for r in unit.respawn if r.is_supervisor or r.agent_id in epochs)
        with conn.cursor() as cur:
            upsert_records(cur, ours)
    return Adoption(unit.node_id, unit.path, ours, unit.leave, epochs)


def _moved(record: AgentRecord, node_id: str) -> AgentRecord:
    return dataclasses.replace(record, node_id=node_id)
