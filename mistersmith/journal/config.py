"""The journal's settings, validated eagerly. Every default is stated once: the
pool's in ``mistersmith.config`` (the node settings ``database.pool_*`` and
``database.*_timeout_s``), the others here.

The database is chosen in this order: ``JournalConfig.database_url``, then the
``MISTERSMITH_DATABASE_URL`` environment variable. With neither, ``Journal.open``
refuses (``DatabaseNotConfiguredError``): the journal never starts a server; a
``Node`` starts a PostgreSQL of its own in its data directory and passes its URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from psycopg.conninfo import make_conninfo

from mistersmith import checks
from mistersmith.config import default
from mistersmith.errors import SpecError

__all__ = ["DATABASE_URL_ENV", "JournalConfig", "PoolConfig", "ssl_hint", "with_ssl"]

DATABASE_URL_ENV = "MISTERSMITH_DATABASE_URL"


def with_ssl(url: str | None, sslmode: str | None = None, sslrootcert: str | None = None) -> str | None:
    """``url`` (a libpq URL or conninfo) with the settings ``database.sslmode`` and ``database.sslrootcert``
    merged in, each winning over the URL's own; ``url`` itself, unchanged, when neither is set (its
    ``?sslmode=...&sslrootcert=...`` then reach libpq as written)."""
    if not url or (sslmode is None and sslrootcert is None):
        return url
    extra = {k: v for k, v in (("sslmode", sslmode), ("sslrootcert", sslrootcert)) if v is not None}
    return make_conninfo(url, **extra)


_SSL_HINTS = (
    ("does not support SSL, but SSL was required", "sslmode (in the database URL, or database.sslmode) requires SSL "
     "and this server has none: use sslmode=prefer or disable for it, or turn SSL on at the server"),
    ("root certificate file", "sslmode=verify-ca or verify-full needs the CA that signed the server's certificate: "
     "set sslrootcert (in the URL, or database.sslrootcert) to its PEM file, or sslrootcert=system"),
    ("certificate verify failed", "the server's certificate is not signed by the CA in sslrootcert (the URL's, or "
     "database.sslrootcert): set it to the CA that signed it"),
    ("does not match host name", "sslmode=verify-full: the server's certificate does not name the URL's host"),
)


def ssl_hint(detail: str) -> str:
    """libpq's ``detail`` with what to do about it when SSL (sslmode, sslrootcert) is the cause."""
    for needle, hint in _SSL_HINTS:
        if needle in detail:
            return f"{detail} ({hint})"
    return detail


@dataclass(frozen=True)
class PoolConfig:
    """The node's ``AsyncConnectionPool`` (the design's defaults, the node settings ``database.*``)."""

    max_size: int = default("database.pool_max")
    min_size: int = default("database.pool_min")
    connect_timeout_s: float = default("database.connect_timeout_s")
    idle_timeout_s: float = default("database.idle_timeout_s")
    max_lifetime_s: float = default("database.max_lifetime_s")

    def __post_init__(self) -> None:
        checks.count("pool.max_size", self.max_size)
        checks.count("pool.min_size", self.min_size, minimum=0)
        if self.min_size > self.max_size:
            raise SpecError(None, "pool.min_size", self.min_size, f"use a value <= max_size ({self.max_size})")
        checks.seconds("pool.connect_timeout_s", self.connect_timeout_s)
        checks.seconds("pool.idle_timeout_s", self.idle_timeout_s)
        checks.seconds("pool.max_lifetime_s", self.max_lifetime_s)


@dataclass(frozen=True)
class JournalConfig:
    """How the journal stores, ships and recovers. All defaults are here."""

    database_url: str | None = None
    """A libpq URL or conninfo; ``None``: ``$MISTERSMITH_DATABASE_URL``."""
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
    close_flush_s: float = 10.0
    """How long ``close`` waits for the backlog to reach PostgreSQL; the rest ships at next start."""

    def __post_init__(self) -> None:
        if not isinstance(self.recover, bool):
            raise SpecError(None, "recover", self.recover, "use True or False")
        if not isinstance(self.pool, PoolConfig):
            raise SpecError(None, "pool", self.pool, "use a PoolConfig(...)")
        checks.count("spool_segment_bytes", self.spool_segment_bytes)
        checks.seconds("sync_timeout_s", self.sync_timeout_s)
        checks.count("batch_max_events", self.batch_max_events)
        checks.count("batch_max_bytes", self.batch_max_bytes)
        checks.seconds("retry_min_s", self.retry_min_s)
        checks.seconds("retry_max_s", self.retry_max_s)
        if self.retry_max_s < self.retry_min_s:
            raise SpecError(None, "retry_max_s", self.retry_max_s, f"use a value >= retry_min_s ({self.retry_min_s})")
        checks.seconds("outage_log_interval_s", self.outage_log_interval_s)
        checks.seconds("close_flush_s", self.close_flush_s, zero=True)

    def resolved_database_url(self) -> str | None:
        """The URL to use, or ``None`` if none is set (a node then starts a server of its own)."""
        return self.database_url or os.environ.get(DATABASE_URL_ENV) or None
