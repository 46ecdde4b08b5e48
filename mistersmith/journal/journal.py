"""``Journal``: one node's supervision journal, wired together.

``Journal.open(data_dir, config)`` connects to the database the config names
(see ``config.py``: it never starts one; with no URL set, a ``Node`` starts
a PostgreSQL of its own and passes its conninfo), applies the migrations,
opens the write-ahead spool in ``data_dir/journal`` and starts shipping it,
and opens the node's connection pool on an event-loop thread (the node's
``LoopThread`` if given, else one of its own). Then::

    journal = Journal.open(data_dir, JournalConfig(database_url=url))
    runtime = Runtime(node_id="n1", sinks=[journal.sink])
    journal.recover(runtime)              # respawn what the last run left running
    ...
    for event in journal.replay(agent_id="a1"):
        ...
    runtime.close()
    journal.close()                       # after the runtime: its last events ship first

Threads: ``open``, ``close``, ``recover``, ``tree_at`` and sync iteration of
``replay`` block; call them from plain threads (each refuses to run on an
event loop and names its async twin).

One implementation, two faces: what reads the database is a coroutine run
on the journal's loop, with the pool (``_atree_at``, ``_aload``); the
blocking face runs it there (``_blocking``), the async face awaits it, on
that loop or from any other (``_awaiting``). What waits on a thread (the
shipper's flush, a runtime's recovery, opening and closing) is blocking, and
its async face runs it in a helper thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from mistersmith.crossing import LoopThread, forbid_blocking, run_in_thread
from mistersmith.history import AgentRecord, Projection, TreeSnapshot

from .codec import encode_line, event_from_row
from .config import JournalConfig, ssl_hint
from .errors import DatabaseNotConfiguredError, DatabaseUnreachableError, JournalClosedError
from .migrate import migrate
from .pool import open_pool, pool_stats
from .recovery import RecoveryReport, RecoveryTarget, recover
from .registry import aload_node
from .replay import Bound, Replay, ReplayFilter, replay_filter
from .shipper import Shipper
from .sink import JournalSink
from .spool import Spool

__all__ = ["Journal", "describe_target"]

logger = logging.getLogger("mistersmith.journal")

_CALL_TIMEOUT_S = 60.0
T = TypeVar("T")


def describe_target(conninfo: str) -> str:
    """``host:port/dbname`` of a conninfo or URL, without credentials (for logs and errors)."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "an unparsable database URL"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


class Journal:
    """The journal of one node: its sink, replay, ``tree_at``, recovery and stats."""

    def __init__(
        self,
        *,
        config: JournalConfig,
        conninfo: str,
        spool: Spool,
        shipper: Shipper,
        loop: LoopThread,
        own_loop: bool,
        pool: AsyncConnectionPool,
    ) -> None:
        self.config = config
        self.conninfo = conninfo
        self.spool = spool
        self.shipper = shipper
        self.sink = JournalSink(spool, sync_timeout_s=config.sync_timeout_s)
        self.loop = loop
        self.pool = pool
        self._own_loop = own_loop
        self.closed = False

    # -- open and close -----------------------------------------------------------

    @classmethod
    def open(
        cls, data_dir: Path | str, config: JournalConfig | None = None, *, loop: LoopThread | None = None
    ) -> Journal:
        """Start everything the journal needs; undo what was started if a step fails.

        ``DatabaseNotConfiguredError`` if ``config`` names no database (and
        ``MISTERSMITH_DATABASE_URL`` is unset): the journal starts no server.
        """
        forbid_blocking("Journal.open()", "await Journal.aopen(...)")
        config = config if config is not None else JournalConfig()
        conninfo = config.resolved_database_url()
        if conninfo is None:
            raise DatabaseNotConfiguredError()
        try:
            applied = migrate(conninfo)
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachableError(describe_target(conninfo), ssl_hint(str(exc).strip())) from exc
        if applied:
            logger.info("journal schema migrated: %s", ", ".join(m.filename for m in applied))
        data_dir = Path(data_dir)
        spool: Spool | None = None
        shipper: Shipper | None = None
        own_loop = loop is None
        loop_thread: LoopThread | None = loop
        try:
            spool = Spool(data_dir / "journal", segment_bytes=config.spool_segment_bytes, fsync=config.spool_fsync,
                          encode=encode_line)
            spool.open()
            shipper = Shipper(
                spool, conninfo,
                batch_max_events=config.batch_max_events, batch_max_bytes=config.batch_max_bytes,
                retry_min_s=config.retry_min_s, retry_max_s=config.retry_max_s,
                connect_timeout_s=config.pool.connect_timeout_s,
                outage_log_interval_s=config.outage_log_interval_s,
            )
            shipper.start()
            if loop_thread is None:
                loop_thread = LoopThread("mistersmith-journal-loop")
            pool = loop_thread.run(open_pool(conninfo, config.pool), config.pool.connect_timeout_s + 5.0)
        except BaseException:
            if shipper is not None:
                shipper.stop()
            if spool is not None:
                spool.close()
            if own_loop and loop_thread is not None:
                loop_thread.stop()
            raise
        return cls(
            config=config, conninfo=conninfo, spool=spool, shipper=shipper, loop=loop_thread,
            own_loop=own_loop, pool=pool,
        )

    @classmethod
    async def aopen(
        cls, data_dir: Path | str, config: JournalConfig | None = None, *, loop: LoopThread | None = None
    ) -> Journal:
        """``open`` for asyncio programs (runs in a helper thread)."""
        return await run_in_thread(lambda: cls.open(data_dir, config, loop=loop), "mistersmith-journal-open")

    def close(self) -> None:
        """Ship what is waiting (up to ``close_flush_s``), then stop everything in reverse.

        Close the Runtime first: events emitted after this are dropped (and
        logged). What did not reach PostgreSQL stays in the spool and is
        shipped by the next ``open`` of this data directory.
        """
        forbid_blocking("Journal.close()", "await journal.aclose()")
        if self.closed:
            return
        self.closed = True
        if not self.shipper.flush(self.config.close_flush_s):
            logger.warning(
                "journal closing with %d events not yet in PostgreSQL; they stay in %s for the next start",
                self.spool.stats()["backlog_events"], self.spool.directory,
            )
        self.shipper.stop()
        self.spool.close()
        try:
            self.loop.run(self.pool.close(), 30.0)
        finally:
            if self._own_loop:
                self.loop.stop()

    async def aclose(self) -> None:
        await run_in_thread(self.close, "mistersmith-journal-close")

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise JournalClosedError(what)

    # -- the two faces of what reads the database ----------------------------------

    def _blocking(self, call: str, instead: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The blocking face: refuse on an event loop (naming ``instead``), else run ``work()`` on the
        journal's loop and wait. ``work()`` is called here, in the caller's thread (it validates)."""
        self._check_open(f"{call}()")
        forbid_blocking(f"Journal.{call}()", instead)
        return self.loop.run(work(), _CALL_TIMEOUT_S)

    async def _awaiting(self, call: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The async face: ``work()`` awaited on the journal's loop, from it or from any other loop."""
        self._check_open(f"{call}()")
        coro = work()
        if asyncio.get_running_loop() is self.loop.loop:
            return await coro
        return await run_in_thread(lambda: self.loop.run(coro, _CALL_TIMEOUT_S), "mistersmith-journal-call")

    # -- writing --------------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every event durable now is in PostgreSQL; False after ``timeout_s``."""
        forbid_blocking("Journal.flush()", "await journal.aflush()")
        return self.shipper.flush(timeout_s)

    async def aflush(self, timeout_s: float | None = None) -> bool:
        return await run_in_thread(lambda: self.shipper.flush(timeout_s), "mistersmith-journal-flush")

    def stats(self) -> dict[str, Any]:
        """Spool, writer and pool figures: backlog, outage, batches... (never blocks)."""
        return {
            "spool": self.spool.stats(),
            "writer": self.shipper.stats(),
            "sink": self.sink.stats(),
            "pool": pool_stats(self.pool),
        }

    # -- reading ----------------------------------------------------------------------------

    def replay(
        self,
        agent_id: str | None = None,
        supervisor: str | None = None,
        since: Bound | None = None,
        until: Bound | None = None,
        event_types: Collection[str] | None = None,
        follow: bool = False,
        *,
        node_id: str | None = None,
        itersize: int = 2000,
        poll_s: float = 1.0,
    ) -> Replay:
        """Journaled events, oldest first: ``for e in ...`` or ``async for e in ...``."""
        self._check_open("replay()")
        filters = replay_filter(agent_id, supervisor, node_id, since, until, event_types)
        return Replay(
            self.conninfo, filters, follow=follow, itersize=itersize, poll_s=poll_s,
            pool=self.pool, pool_loop=self.loop.loop,
        )

    async def _ahead_seq(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql.SQL("SELECT coalesce(max(seq), 0) FROM supervision_events"))).fetchone()
        return int(row[0]) if row else 0

    async def ahead_seq(self) -> int:
        """The journal's last ``seq``, all nodes (0: empty), from any loop."""
        return await self._awaiting("ahead_seq", self._ahead_seq)

    def _tree_at_work(self, at: Bound | None, node_id: str | None) -> Coroutine[Any, Any, TreeSnapshot]:
        filters = ReplayFilter(node_id=node_id, until=at)  # validated now, in the caller's thread
        return self._atree_at(filters)

    async def _atree_at(self, filters: ReplayFilter) -> TreeSnapshot:
        query, params = filters.query()
        projection = Projection()
        async with self.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(name="ms_tree_at") as cur:
                cur.itersize = 5000
                await cur.execute(query, params)
                async for row in cur:
                    projection.apply(event_from_row(row))
        return projection.snapshot()

    def tree_at(self, at: Bound | None = None, *, node_id: str | None = None) -> TreeSnapshot:
        """The supervision tree(s) and every child's state as of ``at`` (a seq or a datetime).

        Rebuilt purely from the journal (``None``: its latest event), with the
        projection the registry and recovery use (``mistersmith.history``).
        """
        return self._blocking("tree_at", "await journal.atree_at(...)", lambda: self._tree_at_work(at, node_id))

    async def atree_at(self, at: Bound | None = None, *, node_id: str | None = None) -> TreeSnapshot:
        """``tree_at`` for asyncio programs."""
        return await self._awaiting("atree_at", lambda: self._tree_at_work(at, node_id))

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, runtime: RecoveryTarget, *, flush_timeout_s: float = 30.0) -> RecoveryReport:
        """Respawn what this node ran before it last stopped (see ``recovery.py``).

        Ships the spool's backlog first, so the registry is current, plans from
        it, and has ``runtime.recover(plan)`` spawn and emit. Does nothing (and
        says so) when ``config.recover`` is off.
        """
        self._check_open("recover()")
        forbid_blocking("Journal.recover()", "await journal.arecover(...)")
        if not self.config.recover:
            logger.info("recovery is turned off (JournalConfig.recover=False)")
            return RecoveryReport(runtime.node_id)
        if not self.shipper.flush(flush_timeout_s):
            logger.warning("recovery reads a registry that misses events still in the spool (PostgreSQL is slow or down)")
        records = self._blocking("recover", "await journal.arecover(...)", lambda: self._aload(runtime.node_id))
        return recover(runtime, records)

    async def arecover(self, runtime: RecoveryTarget, *, flush_timeout_s: float = 30.0) -> RecoveryReport:
        """``recover`` for asyncio programs (runs in a helper thread)."""
        return await run_in_thread(
            lambda: self.recover(runtime, flush_timeout_s=flush_timeout_s), "mistersmith-journal-recover"
        )

    async def _aload(self, node_id: str) -> list[AgentRecord]:
        async with self.pool.connection() as conn:
            return await aload_node(conn, node_id)

    def registry(self, node_id: str) -> list[dict[str, Any]]:
        """The node's rows in the ``agents`` registry, as dicts, in start order."""
        records = self._blocking("registry", "use journal.atree_at() or query the pool", lambda: self._aload(node_id))
        return [r.to_dict() for r in records]

    def count(self) -> int:
        """How many events the journal holds (all nodes)."""
        forbid_blocking("Journal.count()", "query the pool")
        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM supervision_events")).fetchone()
        return int(row[0]) if row else 0

