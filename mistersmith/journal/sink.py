"""``JournalSink``: the event bus's durable sink (the write-ahead hook).

- ``write(event)`` runs under the bus lock, in ``seq`` order: it queues the
  event in the spool, whose writing thread encodes it (``codec.encode_line``,
  the spool's ``encode``) outside the lock. No I/O; it never raises (after
  ``close`` it logs and counts the event as dropped).
- ``sync(event)`` runs right after, in the emitting actor's thread: it returns
  once the spool has fsync'd the event, so the transition's effect (the
  restart, the reply, the next event) cannot be seen before the event is on
  disk. If the disk does not answer within ``sync_timeout_s`` it logs, counts
  and returns, so supervision does not hang on a dead disk.
- ``admit()`` is asked before new work (a spawn) starts, in the caller's
  thread: while the spool's last write failed (a full disk) it raises
  ``SpoolUnwritableError``, so new work is refused at once with a clear
  error instead of being acknowledged without its event on disk.
"""

from __future__ import annotations

import logging
import threading

from mistersmith.supervisors import SupervisionEvent

from .errors import JournalClosedError, SpoolUnwritableError
from .spool import Spool

__all__ = ["JournalSink"]

logger = logging.getLogger("mistersmith.journal.sink")


class JournalSink:
    """Write-ahead sink over a ``Spool``; pass it to ``Runtime(sinks=[...])``."""

    def __init__(self, spool: Spool, *, sync_timeout_s: float) -> None:
        self.spool = spool
        self.sync_timeout_s = sync_timeout_s
        self._tickets: dict[int, int] = {}  # event_id.int -> spool ticket
        self._lock = threading.Lock()
        self.dropped = 0
        self.sync_timeouts = 0

    def write(self, event: SupervisionEvent) -> None:
        try:
            ticket = self.spool.append(None, event)  # the spool's writer encodes it, outside the bus lock
        except JournalClosedError:
            self.dropped += 1
            logger.error(
                "journal closed: event %s not recorded", event.event_type,
                extra={"agent_id": event.agent_id, "supervisor": event.supervisor, "event_type": event.event_type},
            )
            return
        self._tickets[event.event_id.int] = ticket

    def admit(self) -> None:
        """Raise ``SpoolUnwritableError`` while the spool cannot write (any thread; never blocks)."""
        error = self.spool.write_error
        if error is not None:
            raise SpoolUnwritableError(self.spool.directory, error)

    def sync(self, event: SupervisionEvent) -> None:
        ticket = self._tickets.pop(event.event_id.int, None)
        if ticket is None or self.spool.wait_durable(ticket, self.sync_timeout_s):
            return
        with self._lock:
            self.sync_timeouts += 1
        logger.error(
            "journal: event %s not on disk after %.1f s; going on without waiting",
            event.event_type, self.sync_timeout_s,
            extra={"agent_id": event.agent_id, "supervisor": event.supervisor, "event_type": event.event_type},
        )

    def stats(self) -> dict[str, int]:
        return {"dropped_after_close": self.dropped, "sync_timeouts": self.sync_timeouts}
