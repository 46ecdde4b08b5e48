"""The spool's files: record framing, segments, the checkpoint and the directory lock.

Layout of a spool directory::

    LOCK                  flock'ed by the one process that owns the spool
    000000000001.spool    segments: records appended in order
    shipped.pos           "<segment> <offset>": everything before is in PostgreSQL

A record is framed as ``<u32 length><u32 crc32>`` (little-endian) and the
payload. Reading stops short of a frame it cannot complete; ``validate``
finds where the good data of a segment ends (after a crash, a torn frame may
follow) and truncates the rest. Every file here is ``0600`` (``mistersmith.files``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from mistersmith.files import open_private, write_private

from .errors import SpoolError

__all__ = [
    "HEADER",
    "DirectoryLock",
    "SegmentReader",
    "SpoolPosition",
    "frame",
    "list_segments",
    "read_checkpoint",
    "segment_path",
    "validate",
    "write_checkpoint",
]

logger = logging.getLogger("mistersmith.journal.spool")

HEADER = struct.Struct("<II")
_SUFFIX = ".spool"
_SCAN_CHUNK = 1 << 20
_CHECKPOINT = "shipped.pos"


class SpoolPosition(NamedTuple):
    """A place in the spool: a segment number and a byte offset in it."""

    segment: int
    offset: int


def frame(record: bytes) -> bytes:
    return HEADER.pack(len(record), zlib.crc32(record)) + record


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:012d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """The segment numbers present, in order."""
    found = []
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            found.append(int(path.name[: -len(_SUFFIX)]))
        except ValueError:
            logger.warning("ignoring %s in the journal spool", path)
    return sorted(found)


def read_checkpoint(directory: Path, segments: list[int]) -> SpoolPosition:
    """Where shipping stopped; the start of the oldest segment if unknown."""
    first = SpoolPosition(segments[0] if segments else 1, 0)
    try:
        seg_text, off_text = (directory / _CHECKPOINT).read_text().split()
        pos = SpoolPosition(int(seg_text), int(off_text))
    except (OSError, ValueError):
        return first
    return pos if pos >= first else first


def write_checkpoint(directory: Path, pos: SpoolPosition) -> None:
    """Atomically (rename), not durably: a lost checkpoint only means shipping again."""
    write_private(directory / _CHECKPOINT, f"{pos.segment} {pos.offset}\n".encode())


def _scan(path: Path, start: int) -> Iterator[tuple[int, int, bool]]:
    """``(offset, total length, valid)`` of each frame from ``start``; stops after an invalid one."""
    with open(path, "rb") as f:
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


def validate(path: Path, start: int, *, last: bool) -> tuple[int, int, int]:
    """Check a segment's frames from ``start``; truncate what follows the last good one.

    Returns ``(records, bytes, bytes dropped)``. In the ``last`` segment a bad
    tail is a record torn by a crash (never acknowledged: a warning); in an
    older one it is corruption (an error).
    """
    size = path.stat().st_size
    records = nbytes = 0
    good_end = start
    for offset, length, ok in _scan(path, start):
        if not ok:
            break
        records += 1
        nbytes += length
        good_end = offset + length
    dropped = size - good_end
    if dropped > 0:
        log = logger.warning if last else logger.error
        log(
            "journal spool %s: dropping %d bytes after offset %d (%s)", path, dropped, good_end,
            "a record torn by a crash; it was never acknowledged" if last else "corrupt data",
        )
        os.truncate(path, good_end)
    return records, nbytes, max(0, dropped)


class SegmentReader:
    """Reads framed records from the segments of one directory (one open file at a time)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._segment = 0

    def _file(self, segment: int) -> int:
        if self._segment != segment or self._fd < 0:
            self.close()
            self._fd = os.open(segment_path(self.directory, segment), os.O_RDONLY)
            self._segment = segment
        return self._fd

    def size(self, segment: int) -> int:
        return os.fstat(self._file(segment)).st_size

    def read(self, pos: SpoolPosition, end: int, max_records: int, max_bytes: int) -> tuple[list[bytes], int]:
        """Whole records from ``pos`` up to offset ``end`` of its segment: ``(payloads, bytes consumed)``."""
        fd = self._file(pos.segment)
        buf = os.pread(fd, min(end - pos.offset, max_bytes), pos.offset)
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
        return records, off

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class DirectoryLock:
    """An exclusive ``flock`` on ``<directory>/LOCK`` holding our pid; the kernel drops it if we die."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1

    def acquire(self) -> None:
        fd = open_private(self.directory / "LOCK", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SpoolError(
                self.directory, f"is in use by another process (pid {holder}); one node per data directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1
