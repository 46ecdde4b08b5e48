"""The shipper: moves spooled events into PostgreSQL, exactly once, in group commits.

One thread (``mistersmith-journal-ship``) with one connection of its own, so
the write path never waits on the event loop or the pool. Each round takes
every durable record not yet shipped (up to a batch bound) and, in one
transaction:

1. takes the journal's append lock (``APPEND_LOCK_KEY``, transaction-level):
   writers on every node take turns, so ``seq`` order is commit order and a
   reader that has seen ``seq`` N never later finds a new row below N;
2. streams the spooled lines to ``COPY`` unchanged: straight into
   ``supervision_events`` normally, or, when duplicates are possible (the
   first batch after a start or a lost connection, whose commit may or may
   not have happened), through a staging table and
   ``INSERT ... ON CONFLICT (event_id) DO NOTHING``; a duplicate met on the
   straight path rolls back and retries the careful way;
3. folds the inserted events into the ``agents`` registry (``mistersmith.history.projection``);
4. ``NOTIFY``s followers with the last ``seq``.

Only then does the spool checkpoint move. So an event is in PostgreSQL once,
whatever fails when. While PostgreSQL is unreachable the rounds fail, the
backlog grows on disk, and the outage is logged (at once, then every
``outage_log_interval_s``) and shown in ``stats()``. A line PostgreSQL rejects
as data is isolated by bisection and set aside in ``rejected.log`` in the
spool directory, logged and counted, so it cannot block the rest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from mistersmith.files import open_private
from mistersmith.history import Projection
from mistersmith.supervisors import SupervisionEvent

from .codec import COLUMNS, JournalLine
from .outage import OutageLog
from .registry import delete_records, load_node, upsert_records
from .spool import Spool, SpoolPosition

__all__ = ["APPEND_LOCK_KEY", "NOTIFY_CHANNEL", "Shipper"]

logger = logging.getLogger("mistersmith.journal.writer")

APPEND_LOCK_KEY = 0x4D534A524E  # "MSJRN": serialises journal writers
NOTIFY_CHANNEL = "mistersmith_journal"

_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
_COPY_DIRECT = sql.SQL("COPY supervision_events ({}) FROM STDIN").format(_COLS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS ms_journal_stage ("
    " ord bigint GENERATED ALWAYS AS IDENTITY, event_id uuid, occurred_at timestamptz, node_id text,"
    " node_seq bigint, supervisor text, agent_id text, kind text, event_type text, reason text,"
    " restart_count integer, data jsonb) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = sql.SQL("COPY ms_journal_stage ({}) FROM STDIN").format(_COLS)
# Events already journaled (re-shipped after a crash) are filtered out *before* the insert: an
# identity value is drawn for every row an INSERT considers, so ON CONFLICT alone would leave a
# gap in ``seq`` for each. Under the append lock no other writer inserts meanwhile; ON CONFLICT
# stays as the backstop.
_INSERT_STAGED = sql.SQL(
    "INSERT INTO supervision_events ({cols}) SELECT {cols} FROM ms_journal_stage s"
    " WHERE NOT EXISTS (SELECT 1 FROM supervision_events e WHERE e.event_id = s.event_id) ORDER BY ord"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq"
).format(cols=_COLS)
_LAST_SEQ = sql.SQL("SELECT currval(pg_get_serial_sequence('supervision_events', 'seq'))")
_SEQ_NOW = sql.SQL("SELECT pg_sequence_last_value(pg_get_serial_sequence('supervision_events', 'seq')::regclass)")
_SEQS_OF = sql.SQL("SELECT event_id, seq FROM supervision_events WHERE event_id = ANY(%s)")
_NOTIFY = sql.SQL("SELECT pg_notify(%s, %s)")


Event = SupervisionEvent | JournalLine
Numbered = tuple[Event, int]  # an event and its journal seq


class _Duplicate(Exception):
    """The straight path met an event already in the journal."""




def _is_connection_error(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError)):
        return True
    return conn is None or conn.closed or conn.broken


def _is_data_error(exc: BaseException) -> bool:
    """PostgreSQL (or our decoder) refuses the content, not the request."""
    return isinstance(exc, (psycopg.errors.DataError, psycopg.errors.IntegrityError, ValueError))


class Shipper:
    """Ships ``spool`` to the database at ``conninfo`` from its own thread."""

    def __init__(
        self,
        spool: Spool,
        conninfo: str,
        *,
        batch_max_events: int,
        batch_max_bytes: int,
        retry_min_s: float,
        retry_max_s: float,
        connect_timeout_s: float,
        outage_log_interval_s: float,
    ) -> None:
        self.spool = spool
        self.conninfo = conninfo
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = batch_max_bytes
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._pos = spool.shipped_position
        self._projection = Projection()
        self._loaded_nodes: set[str] = set()
        self.outage = OutageLog(spool.stats, outage_log_interval_s)
        # counters
        self.batches = 0
        self.events_shipped = 0
        self.duplicates_skipped = 0
        self.rejected = 0
        self.last_error: str | None = None
        self.last_batch_events = 0

    # -- lifecycle (any thread) ------------------------------------------------------

    def start(self) -> None:
        self._pos = self.spool.shipped_position
        self._thread = threading.Thread(target=self._run, name="mistersmith-journal-ship", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the round in progress; what is not shipped stays in the spool."""
        self._stop.set()
        self.spool.wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                logger.error("journal writer did not stop within %.1f s; abandoned", timeout_s)
        with self._cond:
            self._cond.notify_all()

    def flush(self, timeout_s: float | None) -> bool:
        """Wait until every event durable now is in PostgreSQL; False on timeout."""
        target = self.spool.durable_position
        return self.wait_for(lambda shipper: shipper._pos >= target, timeout_s)

    def wait_for(self, predicate: Callable[[Shipper], bool], timeout_s: float | None) -> bool:
        """Wait until ``predicate(self)`` holds; checked after every round, shipped or failed."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self) or self._stop.is_set(), timeout_s) and predicate(self)

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken and not self.outage.ongoing

    def stats(self) -> dict[str, Any]:
        return {
            "pg_connected": self.connected,
            **self.outage.stats(),
            "batches": self.batches,
            "events_shipped": self.events_shipped,
            "duplicates_skipped": self.duplicates_skipped,
            "rejected": self.rejected,
            "last_batch_events": self.last_batch_events,
            "last_error": self.last_error,
        }

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        careful = True
        delay = self.retry_min_s
        try:
            while not self._stop.is_set():
                if not self.spool.wait_readable(self._pos, 1.0, self._stop) or self._stop.is_set():
                    continue
                try:
                    lines, metas, new_pos, nbytes = self.spool.read(
                        self._pos, self.batch_max_events, self.batch_max_bytes
                    )
                except Exception as exc:
                    logger.critical("journal writer cannot read the spool: %r", exc)
                    self.last_error = repr(exc)
                    self._stop.wait(self.retry_max_s)
                    continue
                if not lines:
                    self._advance(new_pos, 0, 0)
                    continue
                try:
                    conn = self._connection()
                    try:
                        self._ship(conn, lines, metas, careful)
                    except _Duplicate:
                        careful = True
                        self._ship(conn, lines, metas, careful)
                    except Exception as exc:
                        if _is_connection_error(exc, conn) or not _is_data_error(exc):
                            raise
                        self._isolate(conn, lines, metas)
                except Exception as exc:
                    self._failed(exc)
                    careful = True
                    self._stop.wait(delay)
                    delay = min(self.retry_max_s, delay * 2)
                    continue
                careful = False
                delay = self.retry_min_s
                self.outage.up()
                self._advance(new_pos, len(lines), nbytes)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _advance(self, pos: SpoolPosition, records: int, nbytes: int) -> None:
        if records:
            self.spool.commit(pos, records, nbytes)
        with self._cond:
            self._pos = pos
            self._cond.notify_all()

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
            self._conn = None
        self._conn = psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name="mistersmith-journal-writer",
        )
        return self._conn

    def _failed(self, exc: BaseException) -> None:
        self._forget_projection()
        self.last_error = f"{type(exc).__name__}: {str(exc).strip()}"
        try:
            self._note_failure(exc)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _note_failure(self, exc: BaseException) -> None:
        conn = self._conn
        if not _is_connection_error(exc, conn):
            logger.error("journal writer: %s; retrying", self.last_error)
            return
        if conn is not None:
            conn.close()
            self._conn = None
        self.outage.down(self.last_error or "?")

    # -- one batch ------------------------------------------------------------------------

    def _ship(self, conn: psycopg.Connection[Any], lines: list[bytes], metas: list[object], careful: bool) -> None:
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_LOCK, (APPEND_LOCK_KEY,))
                if careful:
                    rows = self._insert_careful(conn, cur, lines, metas)
                else:
                    rows = self._insert_direct(conn, cur, lines, metas)
                changed, removed = self._projection.take_changes()
                delete_records(cur, removed)
                upsert_records(cur, changed)
                if rows:
                    cur.execute(_NOTIFY, (NOTIFY_CHANNEL, str(rows[-1][1])))
        except BaseException:
            self._forget_projection()
            raise
        self.batches += 1
        self.events_shipped += len(rows)
        self.duplicates_skipped += len(lines) - len(rows)
        self.last_batch_events = len(lines)

    @staticmethod
    def _events(lines: list[bytes], metas: list[object]) -> list[Event]:
        """The events of the lines: still in memory (the usual case), else parsed."""
        return [
            meta if isinstance(meta, SupervisionEvent) else JournalLine(line) for line, meta in zip(lines, metas)
        ]

    def _insert_direct(
        self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], lines: list[bytes], metas: list[object]
    ) -> list[Numbered]:
        """COPY straight into the journal, folding into the registry meanwhile; the events with their seqs.

        Under the append lock the new rows take the sequence's next numbers,
        so while the server ingests the COPY (a worker thread feeds it) this
        thread folds the events with those numbers. Afterwards the numbers are
        checked; if a writer that does not take the lock took some in between,
        the fold is done again with the real ones.
        """
        row = cur.execute(_SEQ_NOW).fetchone()
        first = int(row[0] or 0) + 1 if row is not None else 1
        events = self._events(lines, metas)
        expected = list(zip(events, range(first, first + len(events))))
        folded = self._knows_nodes(events)  # else the fold must query the registry: after the COPY
        try:
            with cur.copy(_COPY_DIRECT, writer=QueuedLibpqWriter(cur)) as copy:
                copy.write(b"".join(lines))
                if folded:
                    self._apply(expected)
        except psycopg.errors.UniqueViolation as exc:
            raise _Duplicate from exc
        row = cur.execute(_LAST_SEQ).fetchone()
        assert row is not None
        last = int(row[0])
        rows = expected
        if last != first + len(events) - 1 or not self._numbered_as(cur, expected):
            found = {str(k): v for k, v in cur.execute(_SEQS_OF, ([str(e.event_id) for e in events],)).fetchall()}
            rows = sorted(((e, found[str(e.event_id)]) for e in events), key=lambda pair: pair[1])
            if folded:
                self._forget_projection()
                folded = False
        if not folded:
            self._fold(conn, rows)
        return rows

    @staticmethod
    def _numbered_as(cur: psycopg.Cursor[Any], expected: list[Numbered]) -> bool:
        """The first and last events hold the seqs expected of them."""
        ends = [expected[0], expected[-1]]
        found = {str(k): v for k, v in cur.execute(_SEQS_OF, ([str(e.event_id) for e, _ in ends],)).fetchall()}
        return all(found.get(str(e.event_id)) == seq for e, seq in ends)

    def _insert_careful(
        self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], lines: list[bytes], metas: list[object]
    ) -> list[Numbered]:
        """Through the staging table, skipping events already journaled (folded when they were inserted)."""
        cur.execute(_STAGE)
        with cur.copy(_COPY_STAGE) as copy:
            copy.write(b"".join(lines))
        found = {str(k): v for k, v in cur.execute(_INSERT_STAGED).fetchall()}
        numbered = [(e, found.get(str(e.event_id))) for e in self._events(lines, metas)]
        rows = [(e, seq) for e, seq in numbered if seq is not None]
        self._fold(conn, rows)
        return rows

    def _knows_nodes(self, events: list[Event]) -> bool:
        loaded = self._loaded_nodes
        return all(e.node_id in loaded for e in events)

    def _fold(self, conn: psycopg.Connection[Any], rows: list[Numbered]) -> None:
        """Load the registry of nodes not seen yet, then fold ``rows`` into it."""
        for node_id in {e.node_id for e, _ in rows} - self._loaded_nodes:
            self._projection.load(load_node(conn, node_id))
            self._loaded_nodes.add(node_id)
        self._apply(rows)

    def _apply(self, rows: list[Numbered]) -> None:
        apply = self._projection.apply
        for i, (event, seq) in enumerate(rows):
            apply(event, seq)
            if not i % 512:
                time.sleep(0)  # let emitting threads have the GIL: they wait on us less than we on them

    def _forget_projection(self) -> None:
        """Drop the fold (it may hold changes that were rolled back); it reloads from the registry."""
        self._projection = Projection()
        self._loaded_nodes.clear()

    # -- poison lines -----------------------------------------------------------------------

    def _isolate(self, conn: psycopg.Connection[Any], lines: list[bytes], metas: list[object]) -> None:
        try:
            self._ship(conn, lines, metas, careful=True)
        except Exception as exc:
            if _is_connection_error(exc, conn) or not _is_data_error(exc):
                raise
            if len(lines) == 1:
                self._reject(lines[0], exc)
                return
            mid = len(lines) // 2
            self._isolate(conn, lines[:mid], metas[:mid])
            self._isolate(conn, lines[mid:], metas[mid:])

    def _reject(self, line: bytes, exc: BaseException) -> None:
        self.rejected += 1
        path = self.spool.directory / "rejected.log"
        entry = orjson.dumps(
            {"at": datetime.now(UTC).isoformat(), "error": str(exc).strip(), "line": line.decode("utf-8", "replace")}
        )
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, entry + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        logger.error("journal: PostgreSQL rejected an event (%s); it is kept in %s", str(exc).strip(), path)
