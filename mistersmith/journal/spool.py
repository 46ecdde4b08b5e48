"""The write-ahead spool: append-only, fsync'd segment files in the data directory.

Every supervision event is appended here before its effect is visible, and
shipped to PostgreSQL from here. Layout of the spool directory::

    LOCK                  flock'ed by the one process that owns the spool
    000000000001.spool    segments: records appended in order
    shipped.pos           "<segment> <offset>": everything before is in PostgreSQL

A record is ``<u32 length><u32 crc32>`` (little-endian) and the payload (a
``COPY`` text line, see ``codec.py``).

Group commit: ``append`` (called under the event bus lock) only queues the
record in memory and returns a ticket; one writer thread
(``mistersmith-journal-spool``) writes everything queued since its last
round in one ``write`` and one ``fdatasync``, then wakes every ``wait_durable``
caller whose ticket it covered. Memory stays bounded: an emitting thread waits
for its event to be durable before it goes on, so at most one record per
emitting thread is queued; the backlog waiting for PostgreSQL lives on disk.

After a crash the tail of the last segment may hold a torn record (one that
was never acknowledged): ``open`` validates everything not yet shipped and
truncates a torn tail. A failing write is retried (from the last durable
offset) until it succeeds; meanwhile ``wait_durable`` callers wait.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .errors import JournalClosedError, SpoolError

__all__ = ["Spool", "SpoolPosition"]

logger = logging.getLogger("mistersmith.journal.spool")

HEADER = struct.Struct("<II")
_SUFFIX = ".spool"
_SCAN_CHUNK = 1 << 20
_RETRY_MIN_S = 0.01
_RETRY_MAX_S = 1.0


class SpoolPosition(NamedTuple):
    """A place in the spool: a segment number and a byte offset in it."""

    segment: int
    offset: int


def _segment_name(segment: int) -> str:
    return f"{segment:012d}{_SUFFIX}"


class Spool:
    """The spool in ``directory``. ``open()`` it before use, ``close()`` it after."""

    def __init__(self, directory: Path | str, *, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._appended = 0  # tickets handed out
        self._durable_ticket = 0
        self._durable_pos = SpoolPosition(1, 0)
        self._shipped_pos = SpoolPosition(1, 0)
        self._segment = 1
        self._size = 0
        self._fd = -1
        self._lock_fd = -1
        self._read_fd = -1
        self._read_segment = 0
        self._writer: threading.Thread | None = None
        self._closing = False
        self._abandon = False
        self.closed = True
        # counters (records and bytes are counted from the shipped position at open)
        self.records_durable = 0
        self.bytes_durable = 0
        self.records_shipped = 0
        self.bytes_shipped = 0
        self.groups = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.torn_bytes_dropped = 0

    # -- open and close -----------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, validate the unshipped tail, and start the writer."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            segments = self._segments()
            self._shipped_pos = self._read_checkpoint(segments)
            for segment in segments:
                if segment < self._shipped_pos.segment:
                    (self.directory / _segment_name(segment)).unlink(missing_ok=True)
            segments = [s for s in segments if s >= self._shipped_pos.segment]
            for i, segment in enumerate(segments):
                start = self._shipped_pos.offset if segment == self._shipped_pos.segment else 0
                self._validate(segment, start, last=i == len(segments) - 1)
            self._segment = segments[-1] if segments else self._shipped_pos.segment
            self._open_segment()
            if self._size >= self.segment_bytes:
                self._rotate()
        except BaseException:
            self._release_lock()
            raise
        self._durable_pos = SpoolPosition(self._segment, self._size)
        self.closed = False
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="mistersmith-journal-spool", daemon=True)
        self._writer.start()
        if self.records_durable:
            logger.info(
                "journal spool %s: %d events (%d bytes) from an earlier run wait to be shipped",
                self.directory, self.records_durable, self.bytes_durable,
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, stop the writer, release the directory."""
        with self._cond:
            if self.closed:
                return
            self._closing = True
            self._cond.notify_all()
        writer = self._writer
        if writer is not None:
            writer.join(timeout_s)
            if writer.is_alive():
                logger.error("journal spool writer did not finish within %.1f s; abandoned", timeout_s)
                self._abandon = True
                writer.join(_RETRY_MAX_S * 2)
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        for fd in (self._fd, self._read_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._read_fd = -1
        self._release_lock()

    def _take_lock(self) -> None:
        path = self.directory / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SpoolError(self.directory, f"is in use by another process (pid {holder}); one node per data directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    def _segments(self) -> list[int]:
        found = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                found.append(int(path.name[: -len(_SUFFIX)]))
            except ValueError:
                logger.warning("ignoring %s in the journal spool", path)
        return sorted(found)

    def _read_checkpoint(self, segments: list[int]) -> SpoolPosition:
        first = SpoolPosition(segments[0] if segments else 1, 0)
        try:
            seg_text, off_text = (self.directory / "shipped.pos").read_text().split()
            pos = SpoolPosition(int(seg_text), int(off_text))
        except (OSError, ValueError):
            return first
        return pos if pos >= first else first

    def _frames(self, segment: int, start: int) -> Iterator[tuple[int, int, bool]]:
        """``(offset, total length, valid)`` of each frame from ``start``; stops after an invalid one."""
        with open(self.directory / _segment_name(segment), "rb") as f:
            f.seek(start)
            offset = start
            buf = b""
            while True:
                chunk = f.read(_SCAN_CHUNK)
                buf += chunk
                pos = 0
                while len(buf) - pos >= HEADER.size:
                    length, crc = HEADER.unpack_from(buf, pos)
                    end = pos + HEADER.size + length
                    if end > len(buf):
                        break
                    ok = zlib.crc32(buf[pos + HEADER.size : end]) == crc
                    yield offset + pos, end - pos, ok
                    if not ok:
                        return
                    pos = end
                offset += pos
                buf = buf[pos:]
                if not chunk:
                    if buf:
                        yield offset, len(buf), False
                    return

    def _validate(self, segment: int, start: int, *, last: bool) -> None:
        path = self.directory / _segment_name(segment)
        size = path.stat().st_size
        good_end = start
        for offset, length, ok in self._frames(segment, start):
            if not ok:
                break
            self.records_durable += 1
            self.bytes_durable += length
            good_end = offset + length
        if good_end < size:
            dropped = size - good_end
            self.torn_bytes_dropped += dropped
            log = logger.warning if last else logger.error
            log(
                "journal spool %s: dropping %d bytes after offset %d (%s)", path, dropped, good_end,
                "a record torn by a crash; it was never acknowledged" if last else "corrupt data",
            )
            os.truncate(path, good_end)

    def _open_segment(self) -> None:
        path = self.directory / _segment_name(self._segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self.fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _rotate(self) -> None:
        old = self._fd
        self._segment += 1
        self._open_segment()
        os.close(old)

    # -- appending (any thread) --------------------------------------------------------

    def append(self, record: bytes) -> int:
        """Queue ``record``; return the ticket to ``wait_durable`` on. Never blocks on I/O."""
        frame = HEADER.pack(len(record), zlib.crc32(record)) + record
        with self._cond:
            if self._closing or self.closed:
                raise JournalClosedError("appending an event")
            self._pending.append(frame)
            self._appended += 1
            self._cond.notify_all()
            return self._appended

    def wait_durable(self, ticket: int, timeout_s: float | None) -> bool:
        """Wait until the record with ``ticket`` is on disk; False on timeout or close."""
        with self._cond:
            return self._cond.wait_for(lambda: self._durable_ticket >= ticket or self.closed, timeout_s) and (
                self._durable_ticket >= ticket
            )

    # -- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                frames, self._pending = self._pending, []
                ticket = self._appended
            data = b"".join(frames)
            if not self._write(data):
                return
            with self._cond:
                self._durable_ticket = ticket
                self._durable_pos = SpoolPosition(self._segment, self._size)
                self.records_durable += len(frames)
                self.bytes_durable += len(data)
                self.groups += 1
                self._cond.notify_all()
            if self._size >= self.segment_bytes:
                try:
                    self._rotate()
                except OSError as exc:
                    logger.error("journal spool: could not start a new segment (%r); staying on this one", exc)
                    self._segment -= 1

    def _write(self, data: bytes) -> bool:
        delay = _RETRY_MIN_S
        stop = threading.Event()
        while True:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fdatasync(self._fd)
                self._size += len(data)
                if self.write_errors and self.last_error is not None:
                    logger.warning("journal spool: writing works again")
                    self.last_error = None
                return True
            except OSError as exc:
                self.write_errors += 1
                if self.last_error is None:
                    logger.critical(
                        "journal spool: cannot write %s (%r); supervision waits for the disk",
                        self.directory, exc,
                    )
                self.last_error = repr(exc)
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
                if self._abandon:
                    return False
                stop.wait(delay)
                delay = min(_RETRY_MAX_S, delay * 2)

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

    def read(self, pos: SpoolPosition, max_records: int, max_bytes: int) -> tuple[list[bytes], SpoolPosition, int]:
        """Durable records after ``pos``: ``(payloads, position after them, bytes consumed)``."""
        with self._cond:
            durable = self._durable_pos
        if pos >= durable:
            return [], pos, 0
        fd = self._reader(pos.segment)
        end = os.fstat(fd).st_size if pos.segment < durable.segment else durable.offset
        if pos.offset >= end:
            return [], SpoolPosition(pos.segment + 1, 0), 0
        want = min(end - pos.offset, max_bytes)
        buf = os.pread(fd, want, pos.offset)
        records: list[bytes] = []
        off = 0
        while len(records) < max_records and len(buf) - off >= HEADER.size:
            length, crc = HEADER.unpack_from(buf, off)
            stop = off + HEADER.size + length
            if stop > len(buf):
                if not records:  # one record larger than max_bytes: read just it
                    buf = os.pread(fd, HEADER.size + length, pos.offset)
                    continue
                break
            record = buf[off + HEADER.size : stop]
            if zlib.crc32(record) != crc:
                raise SpoolError(self.directory, f"corrupt record in segment {pos.segment} at offset {pos.offset + off}")
            records.append(record)
            off = stop
        return records, SpoolPosition(pos.segment, pos.offset + off), off

    def _reader(self, segment: int) -> int:
        if self._read_segment != segment or self._read_fd < 0:
            if self._read_fd >= 0:
                os.close(self._read_fd)
            self._read_fd = os.open(self.directory / _segment_name(segment), os.O_RDONLY)
            self._read_segment = segment
        return self._read_fd

    def commit(self, pos: SpoolPosition, records: int, nbytes: int) -> None:
        """Everything before ``pos`` is in PostgreSQL: move the checkpoint, drop old segments."""
        tmp = self.directory / "shipped.pos.tmp"
        tmp.write_text(f"{pos.segment} {pos.offset}\n")
        os.replace(tmp, self.directory / "shipped.pos")
        old = self._shipped_pos
        with self._cond:
            self._shipped_pos = pos
            self.records_shipped += records
            self.bytes_shipped += nbytes
        for segment in range(old.segment, pos.segment):
            (self.directory / _segment_name(segment)).unlink(missing_ok=True)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "directory": str(self.directory),
                "segment": self._segment,
                "records_durable": self.records_durable,
                "records_shipped": self.records_shipped,
                "backlog_events": self.records_durable - self.records_shipped,
                "backlog_bytes": self.bytes_durable - self.bytes_shipped,
                "fsync_groups": self.groups,
                "write_errors": self.write_errors,
                "last_error": self.last_error,
                "torn_bytes_dropped": self.torn_bytes_dropped,
            }
