"""The node's PostgreSQL connection pool (``psycopg_pool.AsyncConnectionPool``).

It lives on the node's event-loop thread: open it, use it and close it there.
Connections are checked on checkout (``check_connection``), so a connection
the server dropped (a restart, an idle timeout) is replaced, not handed out.
The write path does not use it (see ``shipper.py``); replay, ``tree_at``,
recovery and the web layer do.
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from .config import PoolConfig

__all__ = ["open_pool", "pool_stats"]


async def _configure(conn: AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)  # faster jsonb decoding for replay


async def open_pool(conninfo: str, config: PoolConfig, *, name: str = "mistersmith-journal") -> AsyncConnectionPool:
    """Create and open the pool; waits for ``min_size`` connections (at most ``connect_timeout_s``)."""
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        conninfo,
        min_size=config.min_size,
        max_size=config.max_size,
        timeout=config.connect_timeout_s,
        max_idle=config.idle_timeout_s,
        max_lifetime=config.max_lifetime_s,
        kwargs={
            "connect_timeout": max(1, round(config.connect_timeout_s)),
            "application_name": name,
            "autocommit": True,
        },
        check=AsyncConnectionPool.check_connection,
        configure=_configure,
        name=name,
        open=False,
    )
    await pool.open(wait=config.min_size > 0, timeout=config.connect_timeout_s)
    return pool


def pool_stats(pool: AsyncConnectionPool) -> dict[str, Any]:
    """Sizes and counters for health and stats endpoints (safe from any thread)."""
    stats: dict[str, Any] = dict(pool.get_stats())
    stats.update(name=pool.name, min_size=pool.min_size, max_size=pool.max_size, closed=pool.closed)
    return stats
