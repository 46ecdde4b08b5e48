"""``Cluster``: one node's part in a cluster of nodes sharing a PostgreSQL (and a NATS).

It wires three pieces of the PostgreSQL edge to the node's Runtime:

- ``PgOwners``: agent ids are unique across the cluster (given to the Runtime);
- ``NodeLease``: this node's membership lease (``journal/leases.py``: renewal,
  self-fencing, declaring expired nodes down);
- takeover (``journal/takeover.py``): the agents of nodes that are down,
  claimed unit by unit and respawned here (``Runtime.adopt``: ``taken_over``).

What happens when:

- a lease round finds nodes down (or the node just joined): the takeover
  thread deals their units and adopts this node's share, then looks again
  at the next round until none is left;
- this node loses its lease (it could not renew it in time, or it was
  declared down): it stops serving at once (``valid()`` is false: the bridge
  answers nothing), drops its agents (``Runtime.drop_all``; they stay wanted,
  so a survivor, or this node, adopts them), and joins again as a new run;
- it has joined again: its own recovery runs once more; what another node
  took over meanwhile is not started here (``fenced``), the rest comes back.

Membership events (``node_up``, ``node_down``, ``node_draining``) go on the
runtime's bus with an empty agent id: journaled, and published on
``system.events.<node>.<type>``. Threads: ``mistersmith-lease`` and
``mistersmith-takeover``; ``start`` and ``stop`` block.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from mistersmith.history import RecoveryPlan
from mistersmith.journal.handoff import done_handoffs, hand_over, pending_from, take_handoffs
from mistersmith.journal.leases import LeaseConfig, NodeLease
from mistersmith.journal.owners import PgOwners
from mistersmith.journal.takeover import NODE_LOCAL, Adoption, Unit, claim_units, deal, lost_units, up_nodes
from mistersmith.runtime import Runtime

__all__ = ["Cluster", "LeaseConfig"]

logger = logging.getLogger("mistersmith.cluster")

_CLAIM_BATCH = 100  # units claimed in one transaction


class Cluster:
    """Membership, id ownership and takeover for one node (see the module docstring)."""

    def __init__(self, conninfo: str, node_id: str, *, config: LeaseConfig, version: str = "",
                 connect_timeout_s: float = 5.0) -> None:
        self.conninfo = conninfo
        self.node_id = node_id
        self.runtime: Runtime | None = None
        self._facts: Callable[[], dict[str, Any]] = dict
        self._recover: Callable[[], object] = lambda: None
        self._flush: Callable[[], object] = lambda: None
        self._stop_placements: Callable[[], object] = lambda: None
        self._unroute: Callable[[list[str]], object] = lambda ids: None
        self._drop_routes: Callable[[list[str]], object] = lambda ids: None
        self.lease = NodeLease(conninfo, node_id, config=config, facts=lambda: self._facts(),
                               on_event=self._event, on_lost=self._lost, on_regained=self._regained,
                               on_round=self._wake, version=version)
        self.owners = PgOwners(conninfo, node_id, run=self.lease, connect_timeout_s=connect_timeout_s)
        self._work = threading.Event()
        self._rerun_recovery = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.adopted = 0

    def attach(
        self,
        runtime: Runtime,
        *,
        facts: Callable[[], dict[str, Any]],
        recover: Callable[[], object],
    ) -> None:
        """The Runtime (built with ``owners=cluster.owners``), what the lease reports, and how to re-run
        the node's own recovery."""
        self.runtime = runtime
        self._facts = facts
        self._recover = recover

    def valid(self) -> bool:
        """Whether this node may serve its agents now."""
        return self.lease.valid()

    def nodes(self) -> list[dict[str, Any]]:
        return self.lease.nodes()

    # -- drain, handoff, rebalance (blocking; any plain thread) --------------------------

    def drain(self, exit: bool = False, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop taking placements and hand every top-level unit to the other nodes (least loaded
        first); returns once they run there (or ``timeout_s``). ``exit`` is the caller's to act on."""
        units = self._units()
        if not self._others():
            return {"node": self.node_id, "handed_over": [], "exiting": exit,
                    "not_handed_over": [{"id": p, "reason": "no other node is up"} for p, _ in units]}
        self.lease.drain()
        self._stop_placements()
        report = self._hand_units(units, timeout_s)
        report["exiting"] = exit
        return report

    def rebalance(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Hand units away until this node holds at most ceil(mean) + 1 agents (the mean over up nodes)."""
        nodes = [n for n in self.nodes() if n["state"] == "up" and not n["expired"]]
        mine = self._units()
        here = sum(len(ids) for _, ids in mine)
        loads = [here if n["node_id"] == self.node_id else int(n["agents"]) for n in nodes]
        target = math.ceil(sum(loads) / len(loads)) + 1 if loads else here
        chosen: list[tuple[str, list[str]]] = []
        for unit, ids in reversed(mine):  # the newest first
            if here <= target:
                break
            chosen.append((unit, ids))
            here -= len(ids)
        report = self._hand_units(chosen, timeout_s) if chosen else {"node": self.node_id, "handed_over": [],
                                                                      "not_handed_over": []}
        return {"node": self.node_id, "moved": report["handed_over"], "target": target,
                "not_moved": report["not_handed_over"]}

    def _others(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes() if n["node_id"] != self.node_id and n["state"] == "up" and not n["expired"]]

    def connect_edges(self, *, flush: Callable[[], object], stop_placements: Callable[[], object],
                      unroute: Callable[[list[str]], object], drop_routes: Callable[[list[str]], object]) -> None:
        """What the other edges do for a drain and a lost lease: ship the journal, leave the spawn
        queue group, stop answering for agents handed away (once their taker runs them), stop
        answering for agents at once (each blocking; called from a plain thread)."""
        self._flush, self._stop_placements, self._unroute = flush, stop_placements, unroute
        self._drop_routes = drop_routes

    def _units(self) -> list[tuple[str, list[str]]]:
        """This node's top-level units: ``(path, agent ids in it)``, in start order."""
        assert self.runtime is not None
        out: list[tuple[str, list[str]]] = []
        for child in self.runtime.tree().get("children", []):
            out.append((f"root/{child['id']}", _agent_ids(child)))
        return [(path, ids) for path, ids in out if path not in NODE_LOCAL]

    def _hand_units(self, units: list[tuple[str, list[str]]], timeout_s: float) -> dict[str, Any]:
        runtime = self.runtime
        assert runtime is not None
        handed: list[str] = []
        refused: list[dict[str, str]] = []
        others = self._others()
        if not others:
            return {"node": self.node_id, "handed_over": [],
                    "not_handed_over": [{"id": p, "reason": "no other node is up"} for p, _ in units]}
        load = {n["node_id"]: int(n["agents"]) for n in others}
        room = {n["node_id"]: n["max_agents"] for n in others}
        plan: dict[str, list[tuple[str, list[str]]]] = {}  # target -> its units
        for unit, ids in units:
            fits = [n for n in load if room[n] is None or load[n] + len(ids) <= room[n]]
            if not fits:
                refused.append({"id": unit, "reason": "no other node has room"})
                continue
            target = min(fits, key=lambda n: (load[n], n))
            load[target] += len(ids)
            plan.setdefault(target, []).append((unit, ids))
        # Stop them all here first (their callers hear `restarting`), ship the journal once, then move
        # every unit's rows and ids in one transaction: the takers start them in their next round.
        for target, given in plan.items():
            runtime.hand_over([u.split("/", 1)[1] for u, _ in given], f"handed over to node {target}")
        self._flush()
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            with conn.transaction():
                for target, given in plan.items():
                    for unit, ids in given:
                        if hand_over(conn, unit, self.node_id, target):
                            handed.extend(ids or [unit])
                        else:
                            refused.append({"id": unit, "reason": "not in the registry yet (retry)"})
            self._unroute(handed)
            deadline = time.monotonic() + timeout_s
            while pending_from(conn, self.node_id) and time.monotonic() < deadline:
                time.sleep(0.05)  # the takers start them in their next round (every heartbeat)
        return {"node": self.node_id, "handed_over": handed, "not_handed_over": refused}

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Join (the first lease is held on return) and start looking for nodes that are down."""
        self.lease.start()
        self._thread = threading.Thread(target=self._run, name="mistersmith-takeover", daemon=True)
        self._thread.start()

    def stop(self, *, leave: bool = False) -> None:
        self._stopping.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self.lease.stop(leave=leave)
        self.owners.close()

    # -- callbacks from the lease thread ---------------------------------------------------

    def _event(self, event_type: str, node_id: str, data: dict[str, Any]) -> None:
        if self.runtime is not None:
            self.runtime.bus.emit(event_type, supervisor="", kind="node", reason=f"node {node_id}",
                                  data={"node": node_id, **data})

    def _lost(self, why: str) -> None:
        runtime = self.runtime
        if runtime is None or runtime.closed:
            return
        try:
            dropped = runtime.drop_all(f"node lease lost ({why})")
            self._drop_routes(dropped)  # before the lease may be joined again: nothing answers for them here
            logger.warning("node %s dropped %d agent(s): %s", self.node_id, len(dropped), why)
        except Exception:
            logger.exception("node %s: dropping its agents failed", self.node_id)

    def _regained(self) -> None:
        self._rerun_recovery = True
        self._work.set()

    def _wake(self) -> None:
        self._work.set()

    # -- the takeover thread ---------------------------------------------------------

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stopping.is_set():
            self._work.wait()
            self._work.clear()
            if self._stopping.is_set() or self.runtime is None or self.runtime.closed:
                break
            if not self.lease.valid():
                continue
            try:
                if self._rerun_recovery:
                    self._rerun_recovery = False
                    self._recover()
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.conninfo, autocommit=True, application_name="mistersmith-takeover",
                                           connect_timeout=5)
                self._take_handoffs(conn)
                self._take_over(conn)
            except psycopg.Error as exc:
                logger.warning("takeover round failed: %s", str(exc).strip())
                conn = None
            except Exception:
                logger.exception("takeover round failed")
        if conn is not None:
            conn.close()

    def _take_handoffs(self, conn: psycopg.Connection[Any]) -> None:
        adoptions = take_handoffs(conn, self.node_id)
        self._respawn(adoptions, "handed over by")
        done_handoffs(conn, self.node_id, [a.path for a in adoptions])

    def _take_over(self, conn: psycopg.Connection[Any]) -> None:
        units = lost_units(conn)
        if not units:
            return
        # This node's share; and once every survivor has had two rounds to take its own, whatever is
        # still lost (a unit dealt to a survivor that is slow or gone, or dealt differently as loads moved).
        self._adopt(conn, deal(units, up_nodes(conn)).get(self.node_id, []))
        late = 2 * self.lease.config.heartbeat_s
        self._adopt(conn, [u for u in lost_units(conn) if u.down_s > late])

    def _adopt(self, conn: psycopg.Connection[Any], units: list[Unit]) -> None:
        for start in range(0, len(units), _CLAIM_BATCH):
            if self._stopping.is_set() or not self.lease.valid():
                return
            self._respawn(claim_units(conn, units[start:start + _CLAIM_BATCH], self.node_id, self.lease.run_id),
                          "taken over from")

    def _respawn(self, adoptions: list[Adoption], how: str) -> None:
        """Start claimed units here: one ``Runtime.adopt`` per node they came from."""
        assert self.runtime is not None
        by_node: dict[str, list[Adoption]] = {}
        for adoption in adoptions:
            by_node.setdefault(adoption.from_node, []).append(adoption)
        for from_node, taken in by_node.items():
            logger.info("node %s: %d unit(s) %s node %s", self.node_id, len(taken), how, from_node)
            plan = RecoveryPlan(tuple(r for a in taken for r in a.respawn), tuple(x for a in taken for x in a.leave))
            report = self.runtime.adopt(plan, from_node, {k: v for a in taken for k, v in a.epochs.items()})
            self.adopted += len(report.respawned)


def _agent_ids(node: dict[str, Any]) -> list[str]:
    if node.get("type") != "supervisor":
        return [str(node["id"])]
    return [i for child in node.get("children", []) for i in _agent_ids(child)]
