"""``AuditLog``: the audit trail's writer, on the journal's own write path.

An entry (``mistersmith.audit.AuditEntry``) is queued in a write-ahead spool of
its own (``DATA_DIR/audit``, the journal's ``Spool``: append-only, fsync'd in
groups) and shipped to the append-only ``audit_log`` table by the journal's
``Shipper`` with ``AuditInsert`` (exactly once: ``audit_id`` recognises a line
shipped again after a crash).

``record`` never blocks and never raises: it queues the entry and wakes the
log's thread (``mistersmith-audit-write``), which writes whatever is queued in
one group (one ``write``, one ``fdatasync``). So recording costs an action
nothing beyond queueing; the window in which a recorded entry can still be
lost is from its ``record`` to that group's fsync (about a millisecond, one
disk flush), and a node that stops normally writes and ships everything first.

The same thread deletes entries older than ``retention_s`` (by the database's
clock), at most every ``prune_interval_s``: the one delete the table allows.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from mistersmith.audit import AuditEntry

from .codec import _text
from .errors import JournalClosedError
from .insert import Duplicate
from .shipper import Shipper
from .spool import Spool

__all__ = ["AUDIT_COLUMNS", "AuditInsert", "AuditLog", "encode_audit_line"]

logger = logging.getLogger("mistersmith.journal.audit")

AUDIT_COLUMNS: tuple[str, ...] = ("audit_id", "at", "node_id", "actor", "door", "action", "target", "outcome",
                                  "detail", "trace_id")
_COLS = sql.SQL(", ").join(map(sql.Identifier, AUDIT_COLUMNS))
_COPY_DIRECT = sql.SQL("COPY audit_log ({}) FROM STDIN").format(_COLS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS ms_audit_stage (ord bigint GENERATED ALWAYS AS IDENTITY, audit_id uuid,"
    " at timestamptz, node_id text, actor text, door text, action text, target text, outcome text, detail text,"
    " trace_id text) ON COMMIT DELETE ROWS")
_COPY_STAGE = sql.SQL("COPY ms_audit_stage ({}) FROM STDIN").format(_COLS)
_INSERT_STAGED = sql.SQL(
    "INSERT INTO audit_log ({cols}) SELECT {cols} FROM ms_audit_stage s"
    " WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.audit_id = s.audit_id) ORDER BY ord"
    " ON CONFLICT (audit_id) DO NOTHING").format(cols=_COLS)
_PRUNE = sql.SQL("DELETE FROM audit_log WHERE at < now() - make_interval(secs => %s)")
_ALLOW_PRUNE = sql.SQL("SET LOCAL mistersmith.audit_prune = 'on'")


def encode_audit_line(entry: Any) -> bytes:
    """One ``COPY`` text line of an ``AuditEntry``, in ``AUDIT_COLUMNS`` order."""
    assert isinstance(entry, AuditEntry)
    audit_id = entry.audit_id if entry.audit_id is not None else uuid.uuid4()  # drawn once: the line is what ships
    fields = (str(audit_id), entry.at.isoformat(), entry.node_id, entry.actor, entry.door, entry.action,
              entry.target, entry.outcome, entry.detail, entry.trace_id)
    return ("\t".join(_text(f) for f in fields) + "\n").encode("utf-8", "replace")


class AuditInsert:
    """Ships audit lines: ``COPY`` straight in, or through a staging table when some may be there already."""

    def ship(self, conn: psycopg.Connection[Any], lines: list[bytes], metas: list[object], careful: bool) -> int:
        with conn.transaction(), conn.cursor() as cur:
            if careful:
                cur.execute(_STAGE)
                with cur.copy(_COPY_STAGE) as copy:
                    copy.write(b"".join(lines))
                cur.execute(_INSERT_STAGED)
                return max(0, cur.rowcount)
            try:
                with cur.copy(_COPY_DIRECT) as copy:
                    copy.write(b"".join(lines))
            except psycopg.errors.UniqueViolation as exc:
                raise Duplicate from exc
        return len(lines)

    def forget(self) -> None:
        """Nothing is kept between batches."""


class AuditLog:
    """The node's ``AuditRecorder``: ``record`` from any thread; ``open``, then ``close`` after the Runtime."""

    def __init__(self, directory: Path | str, conninfo: str, *, retention_s: float | None,
                 record_commands: bool = True, fsync: bool = True, prune_interval_s: float = 3600.0,
                 connect_timeout_s: float = 10.0, close_flush_s: float = 10.0) -> None:
        self.record_commands = record_commands
        self.retention_s = retention_s
        self.prune_interval_s = prune_interval_s
        self.conninfo = conninfo
        self.connect_timeout_s = connect_timeout_s
        self.close_flush_s = close_flush_s
        self.spool = Spool(directory, fsync=fsync, encode=encode_audit_line)
        self.shipper = Shipper(self.spool, conninfo, batch_max_events=5000, batch_max_bytes=8 << 20,
                               retry_min_s=0.05, retry_max_s=2.0, connect_timeout_s=connect_timeout_s,
                               outage_log_interval_s=30.0, batch=AuditInsert(), name="mistersmith-audit-ship")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at: float | None = None
        self.recorded = 0
        self.dropped = 0
        self.pruned = 0

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> AuditLog:
        self.spool.open()
        self.shipper.start()
        self._thread = threading.Thread(target=self._run, name="mistersmith-audit-write", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Write and ship what is recorded (up to ``close_flush_s``), then stop; the rest ships at next open."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(10.0)
        self._thread = None
        self.spool.write_pending(self.close_flush_s)
        if not self.shipper.flush(self.close_flush_s):
            logger.warning("audit log closing with %d entries not yet in PostgreSQL; they stay in %s",
                           self.spool.stats()["backlog_events"], self.spool.directory)
        self.shipper.stop()
        self.spool.close()

    # -- recording (any thread) -------------------------------------------------------------

    def record(self, entry: AuditEntry) -> None:
        try:
            self.spool.append(None, entry)
        except JournalClosedError:
            self.dropped += 1
            logger.error("audit log closed: %s of %s by %s (%s) not recorded", entry.action, entry.target,
                         entry.actor, entry.door)
            return
        self.recorded += 1
        self._wake.set()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything recorded so far is in PostgreSQL; False after ``timeout_s``."""
        if not self.spool.write_pending(timeout_s):
            return False
        return self.shipper.flush(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "dropped": self.dropped, "pruned": self.pruned,
                "spool": self.spool.stats(), "writer": self.shipper.stats()}

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self.spool.write_pending(10.0):
                logger.error("audit log: could not write to %s (%s); retrying", self.spool.directory,
                             self.spool.stats()["last_error"])
            self._maybe_prune()

    def _maybe_prune(self) -> None:
        if self.retention_s is None:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < self.prune_interval_s:
            return
        self._pruned_at = now
        try:
            self.prune()
        except psycopg.Error as exc:
            logger.warning("audit log: pruning entries older than %.0f s failed: %s; trying again later",
                           self.retention_s, " ".join(str(exc).split()))

    def prune(self) -> int:
        """Delete entries older than ``retention_s`` (the database's clock); how many went."""
        if self.retention_s is None:
            return 0
        with psycopg.connect(self.conninfo, connect_timeout=max(1, round(self.connect_timeout_s)),
                             application_name="mistersmith-audit-prune") as conn:
            with conn.transaction():
                conn.execute(_ALLOW_PRUNE)
                deleted = conn.execute(_PRUNE, (self.retention_s,)).rowcount
        self.pruned += max(0, deleted)
        if deleted:
            logger.info("audit log: pruned %d entries older than %.0f s", deleted, self.retention_s)
        return max(0, deleted)
