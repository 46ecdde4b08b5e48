"""``NodeLease``: this node's membership row in ``nodes`` (migration 005), renewed as a lease.

The rules (docs/operations.md, "Many nodes"):

- **Joining** writes the row with a fresh ``run_id``, state ``up`` and
  ``lease_until = now() + lease_s``: the database's clock, never a node's.
- **Renewal** every ``heartbeat_s`` is one conditional ``UPDATE`` matching the
  node id *and* the run id and a state that is not ``down``: a run that was
  declared down, or replaced by a newer run, can never renew again.
- **Self-fencing.** The node measures, on its own monotonic clock, from the
  moment it *sent* its last successful renewal. Past ``lease_s - margin_s``
  without another one it stops serving (``on_lost``), before the database's
  clock can see the lease expire: PostgreSQL stamped that renewal after it was
  sent, so the lease it granted runs out after ours. The assumption: the two
  clocks run at the same *rate* (within ``margin_s`` over ``lease_s``; no
  absolute agreement is needed), and the node's threads run at least every
  ``margin_s``. A frozen process (SIGSTOP) breaks the second: on waking, the
  first thing checked is ``valid()``, which is already false, and the bridge
  asks ``valid()`` before every command it dispatches.
- **Down.** Each renewal round a node that has renewed without a break for a
  whole ``lease_s`` (a fresh round: after PostgreSQL comes back, every node
  gets a lease's time to renew before anyone judges it) marks every node whose
  lease expired ``down`` in one ``UPDATE ... RETURNING``: each is declared down
  by exactly one node, which emits ``node_down``. Then ``on_round`` runs (the
  node's takeover).
- A run that finds itself down (or replaced) stops serving (``on_lost``) and
  joins again as a new run, empty.

Everything here runs in the thread ``mistersmith-lease`` on a connection of its
own; the callbacks run there too. ``start`` blocks until the first lease is
held (or raises).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

__all__ = ["LeaseConfig", "NodeLease"]

logger = logging.getLogger("mistersmith.journal.leases")

_JOIN = """
INSERT INTO nodes AS n (node_id, run_id, host, pid, version, lease_until, http_url, nats_url, state, agents, max_agents)
VALUES (%(node_id)s, %(run_id)s, %(host)s, %(pid)s, %(version)s, now() + make_interval(secs => %(lease_s)s),
        %(http_url)s, %(nats_url)s, 'up', %(agents)s, %(max_agents)s)
ON CONFLICT (node_id) DO UPDATE SET run_id = EXCLUDED.run_id, host = EXCLUDED.host, pid = EXCLUDED.pid,
    version = EXCLUDED.version, started_at = now(), last_seen = now(), lease_until = EXCLUDED.lease_until,
    http_url = EXCLUDED.http_url, nats_url = EXCLUDED.nats_url, state = 'up', agents = EXCLUDED.agents,
    max_agents = EXCLUDED.max_agents, down_at = NULL
RETURNING (SELECT state FROM nodes WHERE node_id = %(node_id)s) AS previous
"""
_RENEW = """
UPDATE nodes SET last_seen = now(), lease_until = now() + make_interval(secs => %(lease_s)s), agents = %(agents)s,
    http_url = COALESCE(%(http_url)s, http_url), nats_url = COALESCE(%(nats_url)s, nats_url),
    state = CASE WHEN %(draining)s THEN 'draining' ELSE state END
WHERE node_id = %(node_id)s AND run_id = %(run_id)s AND state <> 'down'
RETURNING state
"""
_REAP = """
UPDATE nodes SET state = 'down', down_at = now()
WHERE state <> 'down' AND lease_until < now() AND node_id <> %s
RETURNING node_id, run_id, lease_until
"""
_LEAVE = "UPDATE nodes SET state = 'down', down_at = now(), lease_until = now() WHERE node_id = %s AND run_id = %s"
_NODES = """
SELECT node_id, run_id, host, pid, version, started_at, last_seen, lease_until, http_url, nats_url, state, agents,
       max_agents, down_at, (state <> 'down' AND lease_until < now()) AS expired
FROM nodes ORDER BY node_id
"""


@dataclass(frozen=True)
class LeaseConfig:
    """``cluster.node_lease_s``, ``cluster.heartbeat_s`` and the self-fencing margin."""

    lease_s: float = 5.0
    heartbeat_s: float = 1.0
    margin_s: float = 1.0
    """Stop serving this long before the lease could expire (>= 2 heartbeats' worth of slack is wise)."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.lease_s - self.margin_s or self.margin_s <= 0:
            raise ValueError(f"need 0 < heartbeat_s ({self.heartbeat_s}) < lease_s - margin_s "
                             f"({self.lease_s} - {self.margin_s}) and margin_s > 0")


Facts = Callable[[], dict[str, Any]]
"""What the node reports at each renewal: ``agents``, ``http_url``, ``nats_url``, ``max_agents`` (any may be absent)."""


class NodeLease:
    """This node's lease (see the module docstring). ``start()``, then ``stop(leave=...)``."""

    def __init__(
        self,
        conninfo: str,
        node_id: str,
        *,
        config: LeaseConfig,
        facts: Facts,
        on_event: Callable[[str, str, dict[str, Any]], None],
        on_lost: Callable[[str], None],
        on_regained: Callable[[], None] = lambda: None,
        on_round: Callable[[], None] = lambda: None,
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conninfo = conninfo
        self.node_id = node_id
        self.config = config
        self._facts = facts
        self._on_event = on_event  # (event_type, node_id, data)
        self._on_lost = on_lost
        self._on_regained = on_regained
        self._on_round = on_round
        self._version = version
        self._clock = clock
        self.run_id = ""
        self._valid_until = 0.0
        self._fenced = False  # we stopped serving (self-fenced or found down) and have not joined again
        self._draining = False
        self._fresh_since: float | None = None  # monotonic time since which renewals never failed
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._lose_lock = threading.Lock()
        self.renewals = 0
        self.failures = 0

    # -- any thread -----------------------------------------------------------------

    def valid(self) -> bool:
        """Whether this node may serve its agents now (its lease is surely still its own)."""
        return not self._fenced and self._clock() < self._valid_until

    @property
    def state(self) -> str:
        return "down" if self._fenced else "draining" if self._draining else "up"

    def drain(self) -> None:
        """Say ``draining`` from the next renewal on (placements go elsewhere); emits ``node_draining`` then."""
        self._draining = True

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's row, with ``expired`` (its lease ran out by the database's clock, not yet marked down)."""
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5, row_factory=dict_row) as conn:
            rows = conn.execute(_NODES).fetchall()
        for row in rows:
            for key in ("started_at", "last_seen", "lease_until", "down_at"):
                if row[key] is not None:
                    row[key] = row[key].isoformat()
        return rows

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Join (blocking: the first lease is held when this returns), then renew in a thread."""
        self._join()
        self._thread = threading.Thread(target=self._run, name="mistersmith-lease", daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch, name="mistersmith-lease-watch", daemon=True)
        self._watcher.start()

    def stop(self, *, leave: bool = False, timeout_s: float = 5.0) -> None:
        """Stop renewing. ``leave``: mark this run ``down`` now (its agents may be adopted at once);
        otherwise the lease simply runs out."""
        self._stop.set()
        for thread in (self._thread, self._watcher):
            if thread is not None:
                thread.join(timeout_s)
        if leave and self.run_id:
            try:
                self._connection().execute(_LEAVE, (self.node_id, self.run_id))
            except psycopg.Error as exc:
                logger.warning("could not mark node %s down on leaving: %s", self.node_id, exc)
        self._drop()

    # -- the lease thread -----------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            bound = self.config.lease_s - self.config.margin_s  # a renewal stuck longer is no renewal
            self._conn = psycopg.connect(self.conninfo, autocommit=True, application_name="mistersmith-lease",
                                         connect_timeout=max(1, round(bound)),
                                         options=f"-c statement_timeout={max(1, int(bound * 1000))}")
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _params(self) -> dict[str, Any]:
        facts = self._facts()
        return {"node_id": self.node_id, "run_id": self.run_id, "lease_s": self.config.lease_s,
                "agents": int(facts.get("agents", 0)), "http_url": facts.get("http_url"),
                "nats_url": facts.get("nats_url"), "max_agents": facts.get("max_agents"),
                "draining": self._draining}

    def _join(self) -> None:
        self.run_id = uuid.uuid4().hex
        sent = self._clock()
        params = {**self._params(), "host": socket.gethostname(), "pid": _pid(), "version": self._version}
        row = self._connection().execute(_JOIN, params).fetchone()
        self._valid_until = sent + self.config.lease_s - self.config.margin_s
        self._fenced, self._draining = False, False
        self._said_draining = False  # a new run says node_draining again when it drains
        self._fresh_since = sent
        previous = row[0] if row else None
        logger.info("node %s joined the cluster (run %s)", self.node_id, self.run_id[:8])
        self._on_event("node_up", self.node_id, {"run_id": self.run_id, "previous_state": previous})

    def _run(self) -> None:
        beat = self.config.heartbeat_s
        next_beat = self._clock() + beat
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, next_beat - self._clock())):
                return
            if not self._fenced and self._clock() >= self._valid_until:  # woke too late (frozen, starved)
                self._lose(self._why_expired())
            if self._clock() >= next_beat:
                next_beat = self._clock() + beat
                try:
                    self._round()
                except psycopg.Error as exc:
                    self.failures += 1
                    self._fresh_since = None
                    self._drop()
                    logger.warning("node %s could not renew its lease: %s", self.node_id, str(exc).strip())
                except Exception:
                    logger.exception("node %s: lease round failed", self.node_id)

    def _round(self) -> None:
        if self._fenced:  # we stopped serving: join again as a new run (its own agents may come back)
            with self._lose_lock:  # once the agents are dropped and no longer routed here
                self._join()
            self._on_regained()
            return
        sent = self._clock()
        draining_before = self._draining
        row = self._connection().execute(_RENEW, self._params()).fetchone()
        if row is None:
            self._lose("it was declared down (its lease expired), or a newer run of it joined")
            return
        self.renewals += 1
        self._valid_until = sent + self.config.lease_s - self.config.margin_s
        if self._fresh_since is None:
            self._fresh_since = sent
        if draining_before and row[0] == "draining" and not getattr(self, "_said_draining", False):
            self._said_draining = True
            self._on_event("node_draining", self.node_id, {"run_id": self.run_id})
        if self._clock() - self._fresh_since >= self.config.lease_s:
            for node_id, run_id, lease_until in self._connection().execute(_REAP, (self.node_id,)).fetchall():
                logger.warning("node %s declared node %s down (its lease ran out at %s)", self.node_id, node_id,
                               lease_until.isoformat())
                self._on_event("node_down", node_id, {"run_id": run_id, "declared_by": self.node_id,
                                                      "lease_until": lease_until.isoformat()})
            self._on_round()

    def _watch(self) -> None:
        """The watch thread: fence the node the moment its lease may be gone, even while a renewal
        is stuck in the renewing thread (a lock, a partition). Wakes at least every heartbeat (or
        ``margin_s / 4``, if shorter)."""
        step = min(self.config.margin_s / 4, self.config.heartbeat_s)
        while not self._stop.is_set():
            left = self._valid_until - self._clock()
            if not self._fenced and left <= 0:
                self._lose(self._why_expired())
            if self._stop.wait(min(max(left, 0.0), step) if not self._fenced else step):
                return

    def _why_expired(self) -> str:
        return (f"its lease was not renewed for {self.config.lease_s - self.config.margin_s:.1f} s "
                "(cluster.node_lease_s - cluster.lease_margin_s)")

    def _lose(self, why: str) -> None:
        with self._lose_lock:  # held while the node drops its agents: no rejoin before that is done
            if self._fenced:
                return
            self._fenced = True
            self._valid_until = 0.0
            logger.error("node %s stops serving its agents: %s", self.node_id, why)
            self._on_lost(why)


def _pid() -> int:
    import os

    return os.getpid()
