"""The spool's window of records written lately, kept in memory with the events they encode.

In the usual case the shipper reads from here: the records right after its
position, and with each the ``SupervisionEvent`` it came from, so it neither
reads the segment file nor parses the line. The window keeps the last
``max_records`` records written (a bounded ``deque``); records already
shipped are dropped as the shipper moves on. When the records after a
position are no longer here (a backlog after an outage, or from an earlier
run), ``take`` says so and the spool reads the files.

Not thread-safe: the spool calls it under its lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from .segments import SpoolPosition

__all__ = ["RecentRecords"]


class RecentRecords:
    """``(segment, start, end, record, meta)`` of the records written lately, oldest first."""

    def __init__(self, max_records: int) -> None:
        self._entries: deque[tuple[int, int, int, bytes, object]] = deque(maxlen=max_records)

    def add(self, segment: int, start: int, frames: Sequence[bytes], records: Sequence[bytes],
            metas: Sequence[object]) -> None:
        """A group just written at ``start`` of ``segment``: its frames, their payloads and metas."""
        entries = self._entries
        end = start
        for framed, record, meta in zip(frames, records, metas):
            begin, end = end, end + len(framed)
            entries.append((segment, begin, end, record, meta))

    def first(self) -> SpoolPosition | None:
        """Where the oldest record held starts."""
        return SpoolPosition(self._entries[0][0], self._entries[0][1]) if self._entries else None

    def take(
        self, pos: SpoolPosition, max_records: int, max_bytes: int
    ) -> tuple[list[bytes], list[object], SpoolPosition, int] | None:
        """The records from ``pos`` on, in one segment: ``(payloads, metas, position after, bytes)``;
        ``None`` if the record at ``pos`` is not held. Drops the records before ``pos``."""
        entries = self._entries
        while entries and (entries[0][0], entries[0][1]) < pos:  # shipped already
            entries.popleft()
        if not entries or entries[0][0] != pos.segment or entries[0][1] != pos.offset:
            return None
        records: list[bytes] = []
        metas: list[object] = []
        end = pos.offset
        taken = 0
        for segment, begin, stop, record, meta in entries:
            if segment != pos.segment or begin != end or len(records) >= max_records:
                break
            if records and taken + stop - begin > max_bytes:
                break
            records.append(record)
            metas.append(meta)
            taken += stop - begin
            end = stop
        return records, metas, SpoolPosition(pos.segment, end), taken
