"""Replay: supervision events back from the journal, as sync or async iterators.

``Replay`` is both: ``for event in replay`` (a connection of its own, in the
calling thread) and ``async for event in replay`` (a connection from the
node's pool when iterated on the node's loop, else one of its own).

- Filters: ``agent_id``, ``supervisor``, ``node_id``, ``event_types``;
  ``since`` and ``until`` are inclusive bounds, each a journal ``seq`` (int)
  or an aware ``datetime`` (compared with ``occurred_at``).
- Events come in ``seq`` order through a server-side cursor fetching
  ``itersize`` rows at a time, so memory stays flat over millions of events.
  Their ``seq`` is the journal's (not the emitting node's own number).
- ``follow=True``: after the history, live events. The connection LISTENs
  (the writer NOTIFYs after each commit) *before* the history is read, and
  every later read asks for ``seq > last seen``. Writers commit in ``seq``
  order (they share an append lock), so nothing is skipped and nothing comes
  twice at the hand-over. A lost connection is re-opened and reading resumes
  after the last event delivered. ``poll_s`` bounds the wait when no NOTIFY
  comes. ``until`` ends a follow: a ``seq`` once the journal reaches it (the
  head is read before each catch-up read, and the lock makes everything up to
  it visible to that read); a ``datetime`` once that moment has passed and a
  read finds nothing more (an event held back longer than that, say in a
  spool during an outage, is not waited for).
- ``close()`` ends a follow at its next wake (within ``poll_s``); in asyncio,
  ``await replay.aclose()`` ends it at once and returns the connection (use
  it after breaking out of an ``async for``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Generator, Iterator
from contextlib import AsyncExitStack, aclosing, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from mistersmith.errors import SpecError
from mistersmith.supervisors import EVENT_TYPES, SupervisionEvent

from .codec import SELECT_COLUMNS, event_from_row
from .insert import NOTIFY_CHANNEL

__all__ = ["Bound", "Replay", "ReplayFilter", "replay_filter"]

Bound = int | datetime

_SELECT = sql.SQL("SELECT {} FROM supervision_events").format(sql.SQL(", ").join(map(sql.Identifier, SELECT_COLUMNS)))
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL))
_HEAD = sql.SQL("SELECT coalesce(max(seq), 0) FROM supervision_events")
_RECONNECT_S = 0.5


def _check_bound(key: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, datetime)):
        raise SpecError(None, key, value, "use a journal seq (int) or an aware datetime")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise SpecError(None, key, value, "use an aware datetime, e.g. datetime.now(UTC)")


@dataclass(frozen=True)
class ReplayFilter:
    """Which events to replay; validated eagerly."""

    agent_id: str | None = None
    supervisor: str | None = None
    node_id: str | None = None
    since: Bound | None = None
    until: Bound | None = None
    event_types: tuple[str, ...] | None = None
    trace_id: str | None = None
    """Only the events one request caused (its W3C trace id, 32 hex digits)."""

    def __post_init__(self) -> None:
        _check_bound("since", self.since)
        _check_bound("until", self.until)
        if self.trace_id is not None and not (isinstance(self.trace_id, str) and len(self.trace_id) == 32
                                              and all(c in "0123456789abcdef" for c in self.trace_id)):
            raise SpecError(None, "trace_id", self.trace_id, "use a W3C trace id: 32 lowercase hex digits")
        if self.event_types is not None:
            unknown = sorted(set(self.event_types) - set(EVENT_TYPES))
            if unknown:
                raise SpecError(None, "event_types", unknown, f"use event types: {', '.join(EVENT_TYPES)}")

    def query(self, after_seq: int | None = None) -> tuple[sql.Composed, list[Any]]:
        """The SELECT (ordered by seq) and its parameters."""
        where: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (("agent_id", self.agent_id), ("supervisor", self.supervisor), ("node_id", self.node_id),
                              ("trace_id", self.trace_id)):
            if value is not None:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if self.event_types is not None:
            where.append(sql.SQL("event_type = ANY(%s)"))
            params.append(list(self.event_types))
        for bound, op in ((self.since, ">="), (self.until, "<=")):
            if bound is None:
                continue
            column = "occurred_at" if isinstance(bound, datetime) else "seq"
            where.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(bound)
        if after_seq is not None:
            where.append(sql.SQL("seq > %s"))
            params.append(after_seq)
        query = _SELECT
        if where:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(where))
        return sql.SQL("{} ORDER BY seq").format(query), params

    def ended(self, head_seq: int, found_more: bool) -> bool:
        """For a follow: is ``until`` behind us?"""
        until = self.until
        if until is None:
            return False
        if isinstance(until, datetime):
            return not found_more and datetime.now(UTC) > until
        return head_seq >= until


class _Step(Enum):
    """What the plan asks its face to do next (the face does the I/O)."""

    CONNECT = "connect"  # have an open connection (a new one if it was lost), LISTENing when following
    HEAD = "head"  # read the journal's last seq into ``_Progress.head``
    READ = "read"  # deliver every matching event after ``_Progress.last``, moving it along
    WAIT = "wait"  # wait for a NOTIFY, at most ``poll_s``
    PAUSE = "pause"  # the connection failed: wait a moment before trying again


@dataclass(slots=True)
class _Progress:
    """Where one iteration is: the faces move it, the plan reads it."""

    last: int | None = None  # seq of the last event delivered
    head: int = 0  # the journal's last seq, read before the latest catch-up read


class Replay:
    """An iterable (sync and async) over journaled events; see the module docstring.

    One implementation, two faces: ``_plan`` holds the logic (history, then
    follow: reconnect, head, catch-up read, wait, end) and does no I/O; the
    sync face (``_sync``) and the async one (``_async``) carry out its steps
    on a ``psycopg.Connection`` or a ``psycopg.AsyncConnection``, and throw
    into it the ``OperationalError`` a step met.
    """

    def __init__(
        self,
        conninfo: str,
        filters: ReplayFilter,
        *,
        follow: bool = False,
        itersize: int = 2000,
        poll_s: float = 1.0,
        pool: AsyncConnectionPool | None = None,
        pool_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.filters = filters
        self.follow = follow
        self.itersize = itersize
        self.poll_s = poll_s
        self._pool = pool
        self._pool_loop = pool_loop
        self._closed = threading.Event()
        self._agen: AsyncGenerator[SupervisionEvent, None] | None = None

    def close(self) -> None:
        """End a follow at its next wake; a history read stops at the next batch."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- the logic (no I/O) ----------------------------------------------------------

    def _plan(self, progress: _Progress) -> Generator[_Step, None, None]:
        """The steps of one iteration. A failure of the history read ends it (the error goes to the
        caller); while following, a failed step is retried after a pause, from ``progress.last``."""
        yield _Step.CONNECT
        yield _Step.READ
        while self.follow and not self._closed.is_set():
            try:
                yield _Step.CONNECT
                yield _Step.HEAD  # before the read: it sees everything up to head
                before = progress.last
                yield _Step.READ
                found = progress.last != before
                if self.filters.ended(progress.head, found):
                    return
                if not found:
                    yield _Step.WAIT
            except psycopg.OperationalError:
                yield _Step.PAUSE

    # -- sync face -------------------------------------------------------------------

    def __iter__(self) -> Iterator[SupervisionEvent]:
        return self._sync()

    def _connect(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any]:
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        conn = psycopg.connect(self.conninfo, autocommit=True, application_name="mistersmith-replay")
        try:
            set_json_loads(orjson.loads, conn)
            if self.follow:
                conn.execute(_LISTEN)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read(self, conn: psycopg.Connection[Any], after: int | None) -> Generator[SupervisionEvent, None, None]:
        query, params = self.filters.query(after)
        with conn.transaction(), conn.cursor(name="ms_replay") as cur:
            cur.itersize = self.itersize
            cur.execute(query, params)
            while not self._closed.is_set():
                rows = cur.fetchmany(self.itersize)
                if not rows:
                    return
                for row in rows:
                    yield event_from_row(row)

    def _sync(self) -> Iterator[SupervisionEvent]:
        progress = _Progress()
        plan = self._plan(progress)
        conn: psycopg.Connection[Any] | None = None
        failed: psycopg.OperationalError | None = None
        try:
            while True:
                try:
                    step = next(plan) if failed is None else plan.throw(failed)
                except StopIteration:
                    return
                failed = None
                try:
                    if step is _Step.READ:
                        assert conn is not None
                        with closing(self._read(conn, progress.last)) as rows:
                            for event in rows:
                                progress.last = event.seq
                                yield event
                    elif step is _Step.CONNECT:
                        conn = self._connect(conn)
                    elif step is _Step.HEAD:
                        assert conn is not None
                        head = conn.execute(_HEAD).fetchone()
                        progress.head = int(head[0]) if head else 0
                    elif step is _Step.WAIT:
                        assert conn is not None
                        for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                            pass
                    else:
                        self._closed.wait(_RECONNECT_S)
                except psycopg.OperationalError as exc:
                    failed = exc
        finally:
            plan.close()
            if conn is not None:
                conn.close()

    # -- async face ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[SupervisionEvent]:
        self._agen = self._async()
        return self._agen

    async def aclose(self) -> None:
        """End the iteration now and give its connection back (after a ``break``, say)."""
        self._closed.set()
        agen = self._agen
        if agen is not None:
            await agen.aclose()

    async def _aconnect(self, conn: psycopg.AsyncConnection[Any] | None) -> psycopg.AsyncConnection[Any]:
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            await conn.close()
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name="mistersmith-replay"
        )
        try:
            set_json_loads(orjson.loads, conn)
            if self.follow:
                await conn.execute(_LISTEN)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _aread(
        self, conn: psycopg.AsyncConnection[Any], after: int | None
    ) -> AsyncGenerator[SupervisionEvent, None]:
        query, params = self.filters.query(after)
        async with conn.transaction(), conn.cursor(name="ms_replay") as cur:
            cur.itersize = self.itersize
            await cur.execute(query, params)
            while not self._closed.is_set():
                rows = await cur.fetchmany(self.itersize)
                if not rows:
                    return
                for row in rows:
                    yield event_from_row(row)

    def _pooled(self) -> AsyncConnectionPool | None:
        """The node's pool, for a history read on the node's loop (a follow holds its connection)."""
        pool = self._pool
        if self.follow or pool is None or asyncio.get_running_loop() is not self._pool_loop:
            return None
        return pool

    async def _async(self) -> AsyncGenerator[SupervisionEvent, None]:
        progress = _Progress()
        plan = self._plan(progress)
        pool = self._pooled()
        conn: psycopg.AsyncConnection[Any] | None = None
        failed: psycopg.OperationalError | None = None
        async with AsyncExitStack() as borrowed:  # the pool's connection, if one is used, goes back on exit
            try:
                while True:
                    try:
                        step = next(plan) if failed is None else plan.throw(failed)
                    except StopIteration:
                        return
                    failed = None
                    try:
                        if step is _Step.READ:
                            assert conn is not None
                            async with aclosing(self._aread(conn, progress.last)) as rows:
                                async for event in rows:
                                    progress.last = event.seq
                                    yield event
                        elif step is _Step.CONNECT:
                            if pool is None:
                                conn = await self._aconnect(conn)
                            elif conn is None:
                                conn = await borrowed.enter_async_context(pool.connection())
                        elif step is _Step.HEAD:
                            assert conn is not None
                            head = await (await conn.execute(_HEAD)).fetchone()
                            progress.head = int(head[0]) if head else 0
                        elif step is _Step.WAIT:
                            assert conn is not None
                            async for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                                pass
                        else:
                            await asyncio.sleep(_RECONNECT_S)
                    except psycopg.OperationalError as exc:
                        failed = exc
            finally:
                plan.close()
                if pool is None and conn is not None:
                    await conn.close()


def replay_filter(
    agent_id: str | None,
    supervisor: str | None,
    node_id: str | None,
    since: Bound | None,
    until: Bound | None,
    event_types: Collection[str] | None,
) -> ReplayFilter:
    """A ``ReplayFilter`` from ``replay()``'s keyword arguments."""
    types = None if event_types is None else tuple([event_types] if isinstance(event_types, str) else event_types)
    return ReplayFilter(agent_id, supervisor, node_id, since, until, types)

