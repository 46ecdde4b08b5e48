"""Keeping count of PostgreSQL outages, and telling the operator about them.

The writer reports each failed round (``down``) and each shipped one
(``up``). The first failure of an outage is logged at once with the backlog
waiting in the spool, then again every ``log_interval_s`` while it lasts; the
end is logged with how long it took. ``stats()`` shows the same for the
health and stats endpoints. Only the writer's thread calls ``down``/``up``;
any thread may read ``stats()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["OutageLog"]

logger = logging.getLogger("mistersmith.journal.writer")

Backlog = Callable[[], dict[str, Any]]


class OutageLog:
    """The state of the writer's link to PostgreSQL; ``backlog()`` gives the spool's stats."""

    def __init__(self, backlog: Backlog, log_interval_s: float) -> None:
        self._backlog = backlog
        self.log_interval_s = log_interval_s
        self.since: float | None = None  # monotonic start of the current outage
        self._since_wall: datetime | None = None
        self._logged_at = 0.0
        self.outages = 0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def down(self, error: str) -> None:
        """A round failed because PostgreSQL could not be reached."""
        now = time.monotonic()
        backlog = self._backlog()
        if self.since is None:
            self.since = self._logged_at = now
            self._since_wall = datetime.now(UTC)
            self.outages += 1
            logger.warning(
                "journal: PostgreSQL unreachable (%s); supervision goes on, events wait in the spool "
                "(%d waiting)", error, backlog["backlog_events"],
            )
        elif now - self._logged_at >= self.log_interval_s:
            self._logged_at = now
            logger.warning(
                "journal: PostgreSQL unreachable for %.0f s; %d events (%d bytes) wait in %s",
                now - self.since, backlog["backlog_events"], backlog["backlog_bytes"], backlog["directory"],
            )

    def up(self) -> None:
        """A round reached PostgreSQL."""
        if self.since is None:
            return
        logger.info(
            "journal: PostgreSQL reachable again after %.1f s; shipping %d waiting events",
            time.monotonic() - self.since, self._backlog()["backlog_events"],
        )
        self.since = None
        self._since_wall = None

    def stats(self) -> dict[str, Any]:
        since, wall = self.since, self._since_wall
        return {
            "outage_since": wall.isoformat() if since is not None and wall is not None else None,
            "outage_s": round(time.monotonic() - since, 3) if since is not None else 0.0,
            "outages": self.outages,
        }
