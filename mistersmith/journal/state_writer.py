"""Group commit for ``PgStateStore``: one thread writes every pending commit and effect in one transaction.

Callers (any number of threads) ``submit`` a request and block. The thread
(``mistersmith-state-writer``, daemon, with a connection of its own) takes every
pending request (up to ``max_batch``), runs ONE statement per kind (``unnest``
of arrays, the fence in the same statement), commits, and wakes each waiter
with its own outcome (done, or ``FencedError``) once its row is committed.

The rules for a failure:

- A request is taken only while the thread holds a live connection, so during
  an outage requests stay pending; a waiter whose ``timeout_s`` passes while
  its request is pending removes it (under the lock the thread takes batches
  with) and raises ``StateUnavailableError``: it is never applied later.
- A request already sent cannot be taken back: its waiter waits for that
  transaction's outcome at most another ``timeout_s``, then raises
  ``StateUnavailableError`` with ``outcome_unknown`` (and the request is never
  sent again).
- A batch whose connection broke has an unknown outcome: the thread reconnects
  (``retry_min_s`` doubling to ``retry_max_s``) and looks for each request's row
  (``agent_states (agent_id, version, epoch)``, ``agent_effects (agent_id, key,
  epoch, outcome)``): found is done; missing goes back to pending (the fence is
  checked again when it is retried), or fails if its time is up.
- A batch PostgreSQL refuses for another reason is retried one request at a
  time, so only the bad one fails (``StateUnavailableError`` naming the error).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from mistersmith.errors import FencedError, StateUnavailableError

__all__ = ["Request", "StateWriter"]

logger = logging.getLogger("mistersmith.journal.states")

COMMIT, EFFECT = "commit", "effect"
_PENDING, _SENT, _DONE, _ABANDONED = "pending", "sent", "done", "abandoned"
CLOSED = "the state store is closed"

_COMMIT_SQL = """
WITH b AS (SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::text[], %b::int[], %b::int[], %b::text[])
           AS b(agent_id, epoch, version, state, bytes, keep, node_id)),
p AS (SELECT agent_id, oldest FROM agent_owners WHERE agent_id IN (SELECT agent_id FROM b)),
o AS (UPDATE agent_owners AS o SET version = b.version, oldest = GREATEST(o.oldest, b.version - b.keep + 1) FROM b
      WHERE o.agent_id = b.agent_id AND o.epoch = b.epoch RETURNING o.agent_id, o.epoch),
i AS (INSERT INTO agent_states (agent_id, version, epoch, state, bytes, node_id)
      SELECT b.agent_id, b.version, b.epoch, b.state::jsonb, b.bytes, b.node_id
      FROM b JOIN o ON o.agent_id = b.agent_id AND o.epoch = b.epoch),
d AS (DELETE FROM agent_states s USING b, o, p WHERE o.agent_id = b.agent_id AND o.epoch = b.epoch
      AND p.agent_id = b.agent_id AND s.agent_id = b.agent_id
      AND s.version >= p.oldest AND s.version <= b.version - b.keep)
SELECT agent_id, epoch FROM o
"""
_EFFECT_SQL = """
WITH b AS (SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[]) AS b(agent_id, epoch, key, outcome)),
o AS (SELECT o.agent_id, o.epoch FROM agent_owners AS o
      WHERE (o.agent_id, o.epoch) IN (SELECT agent_id, epoch FROM b) FOR SHARE),
i AS (INSERT INTO agent_effects AS e (agent_id, key, epoch, outcome)
      SELECT b.agent_id, b.key, b.epoch, b.outcome::jsonb FROM b
      WHERE EXISTS (SELECT 1 FROM o WHERE o.agent_id = b.agent_id AND o.epoch = b.epoch)
      ON CONFLICT (agent_id, key) DO UPDATE SET epoch = EXCLUDED.epoch, outcome = EXCLUDED.outcome, recorded_at = now())
SELECT agent_id, epoch FROM o
"""
_FOUND_SQL = """
SELECT b.n FROM unnest(%s::int[], %s::text[], %s::bigint[], %s::bigint[], %s::text[]) AS b(n, agent_id, epoch, version, key)
WHERE EXISTS (SELECT 1 FROM agent_states s WHERE b.key IS NULL
                AND s.agent_id = b.agent_id AND s.version = b.version AND s.epoch = b.epoch)
   OR EXISTS (SELECT 1 FROM agent_effects e WHERE b.key IS NOT NULL
                AND e.agent_id = b.agent_id AND e.key = b.key AND e.epoch = b.epoch)
"""


@dataclass(eq=False)
class Request:
    """One commit (``version``, ``state``, ``bytes``, ``keep``, ``node_id``) or effect (``key``, ``outcome``)."""

    kind: str
    agent_id: str
    epoch: int
    what: str  # for errors: "state version 3", "effect 'k'"
    timeout_s: float = 0.0
    deadline: float = 0.0  # time.monotonic()
    version: int = 0
    state: str = ""
    bytes: int = 0
    keep: int = 1
    node_id: str = ""
    key: str = ""
    outcome: str = ""
    status: str = _PENDING
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _lost(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """The connection broke: what the server did with the batch is unknown."""
    return conn is None or conn.closed or conn.broken or isinstance(exc, (psycopg.InterfaceError, OSError)) or (
        isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.TransactionRollback))


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection still stands, without a round trip.

    An idle connection has nothing to read, unless the server said goodbye (a
    shutdown, a killed backend: an error, then the socket closes). Caught here,
    the next batch is not sent into a dead connection, whose outcome would then
    be unknown. (Other unsolicited input just costs a reconnection.)
    """
    if conn.closed or conn.broken:
        return False
    with selectors.DefaultSelector() as selector:
        selector.register(conn.fileno(), selectors.EVENT_READ)
        return not selector.select(0)


class StateWriter:
    """The group-commit thread over ``conninfo``; ``submit`` from any thread."""

    def __init__(
        self, conninfo: str, *, max_batch: int, connect_timeout_s: float,
        retry_min_s: float = 0.05, retry_max_s: float = 1.0,
    ) -> None:
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.connect_timeout_s = connect_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._cond = threading.Condition()
        self._pending: deque[Request] = deque()
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = None
        self._last_error: str | None = None
        self._in_flight = 0
        self._counts = {"commits": 0, "effects": 0, "fenced": 0, "batches": 0, "batched": 0,
                        "timed_out": 0, "outcome_unknown": 0, "lost_batches": 0}
        self._thread = threading.Thread(target=self._run, name="mistersmith-state-writer", daemon=True)
        self._thread.start()

    # -- callers (any thread) ----------------------------------------------------------

    def submit(self, req: Request, timeout_s: float) -> None:
        """Block until ``req`` is committed (return) or refused (raise); see the module docstring."""
        req.timeout_s = timeout_s
        req.deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._closed:
                raise StateUnavailableError(req.agent_id, req.what, CLOSED)
            self._pending.append(req)
            self._cond.notify_all()
        if not req.done.wait(timeout_s):
            with self._cond:
                if req.status == _PENDING:  # never sent: take it back, so it is never applied
                    self._pending.remove(req)
                    self._counts["timed_out"] += 1
                    self._finish(req, self._timeout_error(req))
            if not req.done.wait(timeout_s):  # sent: wait for that transaction's outcome, a bounded while
                with self._cond:
                    if req.status != _DONE:
                        if req.status == _PENDING:
                            self._pending.remove(req)
                        req.status = _ABANDONED
                        self._counts["outcome_unknown"] += 1
                        raise StateUnavailableError(
                            req.agent_id, req.what,
                            f"its transaction did not finish within {2 * timeout_s:.2f} s "
                            f"({self._last_error or 'PostgreSQL did not answer'})", outcome_unknown=True,
                        )
        if req.error is not None:
            raise req.error

    def close(self, timeout_s: float) -> None:
        """Fail what is pending, let the batch in flight finish, stop the thread. Idempotent."""
        with self._cond:
            self._closed = True
            while self._pending:
                req = self._pending.popleft()
                self._finish(req, StateUnavailableError(req.agent_id, req.what, CLOSED))
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("state writer did not stop within %.1f s; abandoned", timeout_s)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            counts, conn = dict(self._counts), self._conn
            return {**counts, "mean_batch_size": round(counts["batched"] / max(1, counts["batches"]), 2),
                    "connected": conn is not None and not conn.closed and not conn.broken,
                    "pending": len(self._pending), "in_flight": self._in_flight, "last_error": self._last_error}

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(stats())`` holds (checked at every change); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.stats()), timeout_s)

    # -- request states (hold self._cond) ------------------------------------------------

    def _finish(self, req: Request, error: BaseException | None) -> None:
        if req.status in (_DONE, _ABANDONED):
            return
        req.status, req.error = _DONE, error
        req.done.set()
        self._cond.notify_all()

    def _timeout_error(self, req: Request) -> StateUnavailableError:
        why = f"PostgreSQL unreachable ({self._last_error})" if self._last_error else "the writer was busy"
        return StateUnavailableError(req.agent_id, req.what, f"not written within {req.timeout_s:.2f} s: {why}")

    def _requeue(self, batch: list[Request]) -> None:
        """Put unapplied requests back at the front (or fail them if their time is up)."""
        now = time.monotonic()
        with self._cond:
            for req in reversed(batch):
                if req.status != _SENT:
                    continue
                if self._closed:
                    self._finish(req, StateUnavailableError(req.agent_id, req.what, CLOSED))
                elif now >= req.deadline:
                    self._counts["timed_out"] += 1
                    self._finish(req, self._timeout_error(req))
                else:
                    req.status = _PENDING
                    self._pending.appendleft(req)
            self._cond.notify_all()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending or self._closed)
                    if self._closed:
                        return
                if not self._connect_with_retry():
                    return
                batch = self._take()
                if batch:
                    self._send(batch)
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
        except BaseException:  # a bug: fail loudly rather than leave waiters hanging
            logger.exception("state writer crashed")
            self.close(0)
            raise
        finally:
            self._drop()

    def _take(self) -> list[Request]:
        now = time.monotonic()
        batch: list[Request] = []
        with self._cond:
            while self._pending and len(batch) < self.max_batch:
                req = self._pending.popleft()
                if now >= req.deadline:
                    self._counts["timed_out"] += 1
                    self._finish(req, self._timeout_error(req))
                    continue
                req.status = _SENT
                batch.append(req)
            self._in_flight = len(batch)
        return batch

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and _alive(conn):
            return conn
        self._drop()
        self._conn = psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=max(2, round(self.connect_timeout_s)),
            application_name="mistersmith-state-writer",
        )
        if self._last_error is not None:
            logger.info("state writer: PostgreSQL reachable again")
        with self._cond:
            self._last_error = None
            self._cond.notify_all()
        return self._conn

    def _connect_with_retry(self) -> bool:
        """Until connected (True) or closed (False); pending requests wait, and expire, meanwhile."""
        delay = self.retry_min_s
        while True:
            try:
                self._connection()
                return True
            except psycopg.Error as exc:
                self._down(exc)
            with self._cond:
                if self._cond.wait_for(lambda: self._closed, delay):
                    return False
            delay = min(self.retry_max_s, delay * 2)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _down(self, exc: BaseException) -> None:
        self._drop()
        first = self._last_error is None
        with self._cond:
            self._last_error = f"{type(exc).__name__}: {str(exc).strip()}"
            self._cond.notify_all()
        if first:
            logger.warning("state writer: PostgreSQL unreachable (%s); commits wait", self._last_error)

    def _write(self, conn: psycopg.Connection[Any], batch: list[Request]) -> list[bool]:
        """One transaction, one statement per kind; for each request, whether the fence let it through."""
        commits = [r for r in batch if r.kind == COMMIT]
        effects = [r for r in batch if r.kind == EFFECT]
        passed: dict[str, set[tuple[str, int]]] = {COMMIT: set(), EFFECT: set()}
        # One kind: one statement, in autocommit (its own transaction; no BEGIN/COMMIT round trips).
        with conn.transaction() if commits and effects else contextlib.nullcontext():
            if commits:
                cols: tuple[list[Any], ...] = (
                    [r.agent_id for r in commits], [r.epoch for r in commits], [r.version for r in commits],
                    [r.state for r in commits], [r.bytes for r in commits], [r.keep for r in commits],
                    [r.node_id for r in commits])
                passed[COMMIT] = {(a, int(e)) for a, e in conn.execute(_COMMIT_SQL, cols)}
            if effects:
                cols = ([r.agent_id for r in effects], [r.epoch for r in effects], [r.key for r in effects],
                        [r.outcome for r in effects])
                passed[EFFECT] = {(a, int(e)) for a, e in conn.execute(_EFFECT_SQL, cols)}
        return [(r.agent_id, r.epoch) in passed[r.kind] for r in batch]

    def _send(self, batch: list[Request]) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:  # lost before this batch was sent
            self._requeue(batch)
            return
        try:
            accepted = self._write(conn, batch)
        except Exception as exc:
            if _lost(exc, conn):
                self._recover(batch, exc)
            elif isinstance(exc, psycopg.errors.TransactionRollback):  # deadlock, serialization: nothing applied
                self._requeue(batch)
            elif len(batch) > 1:
                for req in batch:
                    if req.status == _SENT:
                        self._send([req])
            else:
                req = batch[0]
                logger.error("state writer: PostgreSQL refused %s of %r: %s", req.what, req.agent_id, exc)
                with self._cond:
                    self._finish(req, StateUnavailableError(
                        req.agent_id, req.what, f"PostgreSQL refused it: {str(exc).strip()}"))
            return
        with self._cond:
            self._counts["batches"] += 1
            self._counts["batched"] += len(batch)
            for req, ok in zip(batch, accepted, strict=True):
                if ok:
                    self._counts["commits" if req.kind == COMMIT else "effects"] += 1
                    self._finish(req, None)
                else:
                    self._counts["fenced"] += 1
                    self._finish(req, FencedError(req.agent_id, req.epoch))

    def _recover(self, batch: list[Request], exc: BaseException) -> None:
        """The batch's outcome is unknown: reconnect, then settle each request by looking for its row."""
        with self._cond:
            self._counts["lost_batches"] += 1
        self._down(exc)
        while True:
            if not self._connect_with_retry():
                return self._unknown(batch, CLOSED)
            try:
                found = self._found(batch)
                break
            except psycopg.Error as again:
                if not _lost(again, self._conn):  # cannot tell: say so rather than loop
                    return self._unknown(batch, f"looking for its row failed: {str(again).strip()}")
                self._down(again)
        with self._cond:
            for n in found:
                self._counts["commits" if batch[n].kind == COMMIT else "effects"] += 1
                self._finish(batch[n], None)
        self._requeue([r for n, r in enumerate(batch) if n not in found])

    def _unknown(self, batch: list[Request], detail: str) -> None:
        with self._cond:
            for req in batch:
                self._finish(req, StateUnavailableError(req.agent_id, req.what, detail, outcome_unknown=True))

    def _found(self, batch: list[Request]) -> set[int]:
        """The requests of ``batch`` whose row is there (a commit's version, an effect's key, under their epoch)."""
        cols = (list(range(len(batch))), [r.agent_id for r in batch], [r.epoch for r in batch],
                [r.version for r in batch], [r.key if r.kind == EFFECT else None for r in batch])
        return {int(row[0]) for row in self._connection().execute(_FOUND_SQL, cols)}
