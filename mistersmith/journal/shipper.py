"""The shipper: moves spooled events into PostgreSQL, exactly once, in group commits.

One thread (``mistersmith-journal-ship``; another spool's, such as the audit
log's, is named by its ``name`` and ships with its own ``batch``) with one connection of its own, so
the write path never waits on the event loop or the pool. Each round takes
every durable record not yet shipped (up to a batch bound) and inserts it in
one transaction (``insert.py``: the append lock, ``COPY`` straight or, when
duplicates are possible, through a staging table, the registry fold,
``NOTIFY``). The first batch after a start or a lost connection goes the
careful way (its commit may or may not have happened); so does one whose
straight ``COPY`` met a duplicate, again.

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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import psycopg

from mistersmith.files import open_private

from .insert import APPEND_LOCK_KEY, NOTIFY_CHANNEL, BatchInsert, Duplicate
from .outage import OutageLog
from .spool import Spool, SpoolPosition

__all__ = ["APPEND_LOCK_KEY", "NOTIFY_CHANNEL", "Batch", "Shipper"]

logger = logging.getLogger("mistersmith.journal.writer")


class Batch(Protocol):
    """What ships one batch of spooled lines (``BatchInsert`` for the journal; the audit log has its own)."""

    def ship(self, conn: psycopg.Connection[Any], lines: list[bytes], metas: list[object], careful: bool) -> int:
        """Insert ``lines`` in one transaction; how many were new. ``Duplicate`` (rolled back) when the
        straight path met a line already there: it is shipped again, ``careful``."""
        ...

    def forget(self) -> None:
        """The transaction failed: drop what was kept of it."""
        ...


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
        batch: Batch | None = None,
        name: str = "mistersmith-journal-ship",
    ) -> None:
        self.spool = spool
        self.name = name
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
        self._batch: Batch = batch if batch is not None else BatchInsert()
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
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
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
                    except Duplicate:
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
        self._batch.forget()
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
        inserted = self._batch.ship(conn, lines, metas, careful)
        self.batches += 1
        self.events_shipped += inserted
        self.duplicates_skipped += len(lines) - inserted
        self.last_batch_events = len(lines)

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
