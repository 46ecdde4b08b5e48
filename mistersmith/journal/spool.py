"""The write-ahead spool: append-only, fsync'd segment files in the data directory.

Every supervision event is appended here before its effect is visible, and
shipped to PostgreSQL from here. The files, framing and checkpoint are in
``segments.py``, writing the current segment (fsync, retries) in
``segment_writer.py``, the in-memory window the shipper reads from in
``recent.py``; a record's payload is a ``COPY`` text line (``codec.py``).

Group commit, leader and followers: ``append`` (called under the event bus
lock) only queues the record in memory and returns a ticket. ``wait_durable``
(the emitting thread, right after) returns at once if an fsync already covered
the ticket; else, if no thread is writing, the caller becomes the leader: it
writes everything queued, by every thread, in one ``write`` and one
``fdatasync`` and wakes the others; else it waits for the leader, and one of
the threads still uncovered leads the next group. While a leader is in
``fdatasync`` the others queue, so a group is as large as the concurrency,
and a lone emitter pays one fsync and no thread hand-off. Memory stays bounded:
an emitting thread waits for its event to be durable before it goes on, so at
most one record per emitting thread is queued; the backlog waiting for
PostgreSQL lives on disk. (Records nobody waits for are written by the
shipper's ``write_pending`` within a second, or by ``close``.)

After a crash the tail of the last segment may hold a torn record (one that
was never acknowledged): ``open`` validates everything not yet shipped and
truncates a torn tail. A failing write is retried (from the last durable
offset) until the leader's own timeout; its records stay queued for the next
leader, and ``wait_durable`` callers keep waiting (up to their timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistersmith.files import make_private_dirs

from .errors import JournalClosedError
from .recent import RecentRecords
from .segment_writer import SegmentWriter
from .segments import (
    HEADER,
    DirectoryLock,
    SegmentReader,
    SpoolPosition,
    frame,
    list_segments,
    read_checkpoint,
    segment_path,
    validate,
    write_checkpoint,
)

__all__ = ["HEADER", "Spool", "SpoolPosition"]

logger = logging.getLogger("mistersmith.journal.spool")

CHECKPOINT_INTERVAL_S = 0.1


class Spool:
    """The spool in ``directory``. ``open()`` it before use, ``close()`` it after."""

    def __init__(
        self,
        directory: Path | str,
        *,
        segment_bytes: int = 64 << 20,
        fsync: bool = True,
        group_wait_s: float = 0.001,
        recent_max: int = 50_000,
        encode: Callable[[Any], bytes] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.group_wait_s = group_wait_s
        self._encode = encode
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # durable progress: followers, the shipper
        self._arrived = threading.Condition(self._lock)  # a record queued while the leader gathers
        self._writing = False  # a leader is writing a group
        self._gathering = False
        self._followers = 0  # threads waiting in wait_durable
        self._expect = 1  # how many records the next group should wait for (see _gather)
        self._pending: list[bytes | None] = []  # records, or None: encode(meta) when written
        self._pending_meta: list[object] = []
        self._recent = RecentRecords(recent_max)  # the records written lately, with their events (see read)
        self._appended = 0  # tickets handed out
        self._durable_ticket = 0
        self._durable_pos = SpoolPosition(1, 0)
        self._shipped_pos = SpoolPosition(1, 0)
        self._checkpoint_pos = SpoolPosition(1, 0)
        self._checkpoint_at = 0.0
        self._writer = SegmentWriter(self.directory, fsync=fsync)
        self._dir_lock = DirectoryLock(self.directory)
        self._reader = SegmentReader(self.directory)
        self._closing = False
        self.closed = True
        # counters (records and bytes are counted from the shipped position at open)
        self.records_durable = 0
        self.bytes_durable = 0
        self.records_shipped = 0
        self.bytes_shipped = 0
        self.groups = 0
        self.torn_bytes_dropped = 0

    # -- open and close -----------------------------------------------------------

    def open(self) -> None:
        """Lock the directory and validate what is not shipped yet (truncating a torn tail)."""
        make_private_dirs(self.directory)
        writer = self._writer
        self._dir_lock.acquire()
        try:
            segments = list_segments(self.directory)
            self._shipped_pos = self._checkpoint_pos = read_checkpoint(self.directory, segments)
            for segment in segments:
                if segment < self._shipped_pos.segment:
                    segment_path(self.directory, segment).unlink(missing_ok=True)
            segments = [s for s in segments if s >= self._shipped_pos.segment]
            for i, segment in enumerate(segments):
                start = self._shipped_pos.offset if segment == self._shipped_pos.segment else 0
                records, nbytes, dropped = validate(
                    segment_path(self.directory, segment), start, last=i == len(segments) - 1
                )
                self.records_durable += records
                self.bytes_durable += nbytes
                self.torn_bytes_dropped += dropped
            writer.open(segments[-1] if segments else self._shipped_pos.segment)
            if writer.size >= self.segment_bytes:
                writer.rotate()
        except BaseException:
            writer.close()
            self._dir_lock.release()
            raise
        self._durable_pos = SpoolPosition(writer.segment, writer.size)
        self.closed = False
        self._closing = False
        if self.records_durable:
            logger.info(
                "journal spool %s: %d events (%d bytes) from an earlier run are not confirmed shipped; those "
                "not in the journal yet will be, the others are skipped (counted in duplicates_skipped)",
                self.directory, self.records_durable, self.bytes_durable,
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (trying for at most ``timeout_s``), release the directory."""
        with self._lock:
            if self.closed or self._closing:
                return
            self._closing = True
        if not self.write_pending(timeout_s):
            logger.error("journal spool: closing with %d events not written (%s)", len(self._pending),
                         self._writer.last_error)
        with self._lock:
            self.closed = True
            self._cond.notify_all()
        if self._shipped_pos != self._checkpoint_pos:
            self._write_checkpoint(self._shipped_pos)
        self._writer.close()
        self._reader.close()
        self._dir_lock.release()

    # -- appending (any thread) --------------------------------------------------------

    def append(self, record: bytes | None, meta: object = None) -> int:
        """Queue ``record``; return the ticket to ``wait_durable`` on. Never blocks on I/O.

        With ``record=None`` the record is ``encode(meta)`` (the spool's
        ``encode``), computed by the thread that writes the group, so that
        callers holding a lock (the event bus) only queue. Once written, the
        record and ``meta`` (the event it encodes) stay in memory for a while
        (``recent_max`` records), so that ``read`` can serve the shipper
        without reading the file or parsing the line again.
        """
        if record is None and self._encode is None:
            raise TypeError("Spool.append(None, meta) needs a spool made with encode=...")
        with self._lock:
            if self._closing or self.closed:
                raise JournalClosedError("appending an event")
            self._pending.append(record)
            self._pending_meta.append(meta)
            self._appended += 1
            if self._gathering:
                self._arrived.notify()
            return self._appended

    def wait_durable(self, ticket: int, timeout_s: float | None) -> bool:
        """Return once the record with ``ticket`` is on disk, leading a group write if no one is.

        False if ``timeout_s`` passed first (or the spool closed without it).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                while True:
                    if self._durable_ticket >= ticket:
                        return True
                    if self.closed:
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if not self._writing:
                        self._writing = True
                        break  # lead this group
                    self._followers += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._followers -= 1
            self._lead(deadline)

    def write_pending(self, timeout_s: float | None) -> bool:
        """Write whatever is queued now (for records no one waits for); False if it failed."""
        with self._lock:
            ticket = self._appended
        return self.wait_durable(ticket, timeout_s)

    def _lead(self, deadline: float | None) -> None:
        """Write every queued record as one group. Called with ``_writing`` set; clears it."""
        try:
            with self._lock:
                self._gather()
                queued, self._pending = self._pending, []
                metas, self._pending_meta = self._pending_meta, []
                ticket = self._appended
            if not queued:
                return
            encode = self._encode
            records = [r if r is not None else encode(m) for r, m in zip(queued, metas)]  # type: ignore[misc]
            frames = [frame(r) for r in records]
            data = b"".join(frames)
            writer = self._writer
            segment, start = writer.segment, writer.size
            if not writer.write(data, deadline):
                with self._lock:
                    self._pending[:0] = records  # a later leader tries again, in the same order
                    self._pending_meta[:0] = metas
                return
            with self._lock:
                self._recent.add(segment, start, frames, records, metas)
                self._durable_ticket = ticket
                self._durable_pos = SpoolPosition(segment, writer.size)
                self.records_durable += len(frames)
                self.bytes_durable += len(data)
                self.groups += 1
            if writer.size >= self.segment_bytes:
                try:
                    writer.rotate()
                except OSError as exc:
                    logger.error("journal spool: could not start a new segment (%r); staying on this one", exc)
                with self._lock:
                    self._durable_pos = SpoolPosition(writer.segment, writer.size)
        finally:
            with self._lock:
                self._writing = False
                self._expect = self._followers + 1  # they (and we) will likely emit again soon
                self._cond.notify_all()

    def _gather(self) -> None:
        """Group commit: give the threads just woken a moment to join this group.

        After an fsync wakes a group of emitting threads, each emits its next
        event a little after the other (they take turns on the GIL); writing at
        the first would make groups of one or two. The leader waits, at most
        ``group_wait_s``, until as many records are queued as threads took part
        in the last round. A lone emitter never waits. Called with the lock held.
        """
        if len(self._pending) >= self._expect or self.group_wait_s <= 0:
            return
        deadline = time.monotonic() + self.group_wait_s
        self._gathering = True
        try:
            while len(self._pending) < self._expect and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
        finally:
            self._gathering = False

    # -- reading and shipping (the shipper's thread) -------------------------------------

    @property
    def shipped_position(self) -> SpoolPosition:
        return self._shipped_pos

    @property
    def durable_position(self) -> SpoolPosition:
        with self._cond:
            return self._durable_pos

    def wait_readable(self, pos: SpoolPosition, timeout_s: float | None, stop: threading.Event | None = None) -> bool:
        """Wait until there is durable data after ``pos``, the spool closes or ``stop`` is set."""

        def ready() -> bool:
            return self._durable_pos > pos or self.closed or (stop is not None and stop.is_set())

        with self._cond:
            return self._cond.wait_for(ready, timeout_s) and self._durable_pos > pos

    def wake(self) -> None:
        """Make ``wait_readable`` waiters look at their ``stop`` event again."""
        with self._cond:
            self._cond.notify_all()

    def read(
        self, pos: SpoolPosition, max_records: int, max_bytes: int
    ) -> tuple[list[bytes], list[object], SpoolPosition, int]:
        """Durable records after ``pos``: ``(payloads, metas, position after them, bytes consumed)``.

        Served from memory when the records after ``pos`` are still there (the
        usual case); else (a backlog after an outage or a restart) from the
        segment files, with ``None`` metas. Reading does not consume: the
        same position reads the same records again (from the files).
        """
        with self._lock:
            recent = self._recent.take(pos, max_records, max_bytes)
            durable = self._durable_pos
            ahead = self._recent.first()
        if recent is not None:
            return recent
        if pos >= durable:
            return [], [], pos, 0
        end = self._reader.size(pos.segment) if pos.segment < durable.segment else durable.offset
        if ahead is not None and ahead.segment == pos.segment and pos.offset < ahead.offset < end:
            end = ahead.offset  # read up to what memory still holds, and serve the rest from there
        if pos.offset >= end:
            return [], [], SpoolPosition(pos.segment + 1, 0), 0
        records, consumed = self._reader.read(pos, end, max_records, max_bytes)
        return records, [None] * len(records), SpoolPosition(pos.segment, pos.offset + consumed), consumed

    def commit(self, pos: SpoolPosition, records: int, nbytes: int) -> None:
        """Everything before ``pos`` is in PostgreSQL: move the checkpoint, drop old segments.

        The checkpoint file is rewritten at most every ``CHECKPOINT_INTERVAL_S``
        (and on close, and before a segment is deleted): after a crash, what was
        shipped since is shipped again, and the journal ignores it.
        """
        old = self._shipped_pos
        with self._cond:
            self._shipped_pos = pos
            self.records_shipped += records
            self.bytes_shipped += nbytes
        now = time.monotonic()
        if pos.segment != old.segment or now - self._checkpoint_at >= CHECKPOINT_INTERVAL_S:
            self._write_checkpoint(pos)
            self._checkpoint_at = now
        for segment in range(old.segment, pos.segment):
            segment_path(self.directory, segment).unlink(missing_ok=True)

    def _write_checkpoint(self, pos: SpoolPosition) -> None:
        write_checkpoint(self.directory, pos)
        self._checkpoint_pos = pos

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, while no later one has succeeded (None: the disk takes writes)."""
        return self._writer.last_error

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "directory": str(self.directory),
                "segment": self._writer.segment,
                "records_durable": self.records_durable,
                "records_shipped": self.records_shipped,
                "backlog_events": self.records_durable - self.records_shipped,
                "backlog_bytes": self.bytes_durable - self.bytes_shipped,
                "fsync_groups": self.groups,
                "write_errors": self._writer.write_errors,
                "last_error": self._writer.last_error,
                "torn_bytes_dropped": self.torn_bytes_dropped,
            }
