"""The segment being written: appends framed groups to it, fsync'd, retrying a failing disk.

One writer at a time uses it: the spool's group leader (``spool.py``). A
group is written with one ``write`` (looping on short writes) and one
``fdatasync``; if either fails, the segment is cut back to its last durable
size and the write is retried, backing off from 10 ms to 1 s, until the
caller's deadline. The first failure is logged as critical, the recovery
once. A new segment's directory entry is fsync'd before anything is
acknowledged from it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mistersmith.files import open_private

from .segments import segment_path

__all__ = ["SegmentWriter"]

logger = logging.getLogger("mistersmith.journal.spool")

_RETRY_MIN_S = 0.01
_RETRY_MAX_S = 1.0


class SegmentWriter:
    """Appends to segment ``segment`` of ``directory``; ``size`` is its durable length."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment = 1
        self.size = 0
        self._fd = -1
        self.write_errors = 0
        self.last_error: str | None = None

    def open(self, segment: int) -> None:
        """Write to ``segment`` from now on (created if missing); the previous one is closed.

        Raises ``OSError`` if it cannot be opened, and then stays on the previous one.
        """
        fd = open_private(segment_path(self.directory, segment), os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if self.fsync:
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            os.close(fd)
            raise
        old, self._fd, self.segment, self.size = self._fd, fd, segment, size
        if old >= 0:
            os.close(old)

    def rotate(self) -> None:
        """Go on in the next segment (``OSError`` if it cannot be made: this one stays)."""
        self.open(self.segment + 1)

    def write(self, data: bytes, deadline: float | None) -> bool:
        """Append ``data`` durably; False if it still failed at ``deadline`` (nothing of it stays)."""
        delay = _RETRY_MIN_S
        while True:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fdatasync(self._fd)
                self.size += len(data)
                if self.last_error is not None:
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
                    os.ftruncate(self._fd, self.size)
                except OSError:
                    pass
                if deadline is not None and time.monotonic() + delay > deadline:
                    return False
                time.sleep(delay)
                delay = min(_RETRY_MAX_S, delay * 2)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
