"""The journal's settings, and every default they have, stated once.

The database is chosen in this order: ``JournalConfig.database_url``, then the
``MISTERSMITH_DATABASE_URL`` environment variable, then an embedded
PostgreSQL in the node's data directory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from mistersmith.errors import SpecError

__all__ = ["DATABASE_URL_ENV", "JournalConfig", "PoolConfig"]

DATABASE_URL_ENV = "MISTERSMITH_DATABASE_URL"


def _positive(key: str, value: object, *, integer: bool = False, zero: bool = False) -> None:
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)
        if not ok:
            raise SpecError(None, key, value, f"use an integer {'>=' if zero else '>'} 0")
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if zero else value > 0):  # type: ignore[operator]
        raise SpecError(None, key, value, f"use a finite number {'>=' if zero else '>'} 0")


@dataclass(frozen=True)
class PoolConfig:
    """The node's ``AsyncConnectionPool`` (the design's defaults)."""

    max_size: int = 30
    min_size: int = 5
    connect_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    max_lifetime_s: float = 3600.0

    def __post_init__(self) -> None:
        _positive("pool.max_size", self.max_size, integer=True)
        _positive("pool.min_size", self.min_size, integer=True, zero=True)
        if self.min_size > self.max_size:
            raise SpecError(None, "pool.min_size", self.min_size, f"use a value <= max_size ({self.max_size})")
        _positive("pool.connect_timeout_s", self.connect_timeout_s)
        _positive("pool.idle_timeout_s", self.idle_timeout_s)
        _positive("pool.max_lifetime_s", self.max_lifetime_s)


@dataclass(frozen=True)
class JournalConfig:
    """How the journal stores, ships and recovers. All defaults are here."""

    database_url: str | None = None
    """A libpq URL or conninfo; ``None``: ``$MISTERSMITH_DATABASE_URL``, else embedded."""
    recover: bool = True
    """Respawn this node's agents from the registry when it starts (``Journal.recover``)."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    spool_fsync: bool = True
    """``fdatasync`` each group of events before their effects show. Off only for tests."""
    spool_segment_bytes: int = 64 << 20
    sync_timeout_s: float = 30.0
    """Longest an emitting thread waits for its event to reach the disk; then it logs and goes on."""
    batch_max_events: int = 5000
    batch_max_bytes: int = 8 << 20
    retry_min_s: float = 0.05
    retry_max_s: float = 2.0
    outage_log_interval_s: float = 30.0
    embedded_durable: bool = True
    """Run the embedded PostgreSQL with ``fsync`` on. Off only for tests."""
    close_flush_s: float = 10.0
    """How long ``close`` waits for the backlog to reach PostgreSQL; the rest ships at next start."""

    def __post_init__(self) -> None:
        if not isinstance(self.recover, bool):
            raise SpecError(None, "recover", self.recover, "use True or False")
        if not isinstance(self.pool, PoolConfig):
            raise SpecError(None, "pool", self.pool, "use a PoolConfig(...)")
        _positive("spool_segment_bytes", self.spool_segment_bytes, integer=True)
        _positive("sync_timeout_s", self.sync_timeout_s)
        _positive("batch_max_events", self.batch_max_events, integer=True)
        _positive("batch_max_bytes", self.batch_max_bytes, integer=True)
        _positive("retry_min_s", self.retry_min_s)
        _positive("retry_max_s", self.retry_max_s)
        if self.retry_max_s < self.retry_min_s:
            raise SpecError(None, "retry_max_s", self.retry_max_s, f"use a value >= retry_min_s ({self.retry_min_s})")
        _positive("outage_log_interval_s", self.outage_log_interval_s)
        _positive("close_flush_s", self.close_flush_s, zero=True)

    def resolved_database_url(self) -> str | None:
        """The URL to use, or ``None`` for the embedded server."""
        return self.database_url or os.environ.get(DATABASE_URL_ENV) or None
