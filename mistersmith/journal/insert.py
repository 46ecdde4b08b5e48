"""One batch into the journal: one transaction, exactly once, folded into the registry.

``BatchInsert.ship`` does, in one transaction on the shipper's connection:

1. takes the journal's append lock (``APPEND_LOCK_KEY``, transaction-level):
   writers on every node take turns, so ``seq`` order is commit order and a
   reader that has seen ``seq`` N never later finds a new row below N;
2. streams the spooled lines to ``COPY`` unchanged: straight into
   ``supervision_events`` (``careful=False``), or through a staging table and
   ``INSERT ... ON CONFLICT (event_id) DO NOTHING`` when duplicates are
   possible (``careful=True``: the first batch after a start or a lost
   connection, whose commit may or may not have happened). A duplicate met
   on the straight path raises ``Duplicate`` (rolled back): ship it again,
   carefully;
3. folds the inserted events into the ``agents`` registry
   (``mistersmith.history.projection``), keeping the fold between batches and
   loading a node's rows the first time it meets the node;
4. ``NOTIFY``s followers with the last ``seq``.

If the transaction fails, the fold is forgotten (it may hold changes that
were rolled back) and reloaded from the registry at the next batch.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from mistersmith.history import Projection
from mistersmith.supervisors import SupervisionEvent

from .codec import COLUMNS, JournalLine, current_line
from .registry import delete_records, load_node, upsert_records

__all__ = ["APPEND_LOCK_KEY", "NOTIFY_CHANNEL", "BatchInsert", "Duplicate"]

APPEND_LOCK_KEY = 0x4D534A524E  # "MSJRN": serialises journal writers
NOTIFY_CHANNEL = "mistersmith_journal"

_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
_COPY_DIRECT = sql.SQL("COPY supervision_events ({}) FROM STDIN").format(_COLS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS ms_journal_stage ("
    " ord bigint GENERATED ALWAYS AS IDENTITY, event_id uuid, occurred_at timestamptz, node_id text,"
    " node_seq bigint, supervisor text, agent_id text, kind text, event_type text, reason text,"
    " restart_count integer, data jsonb, trace_id text) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = sql.SQL("COPY ms_journal_stage ({}) FROM STDIN").format(_COLS)
# Events already journaled (re-shipped after a crash) are filtered out *before* the insert: an
# identity value is drawn for every row an INSERT considers, so ON CONFLICT alone would leave a
# gap in ``seq`` for each. Under the append lock no other writer inserts meanwhile; ON CONFLICT
# stays as the backstop.
_INSERT_STAGED = sql.SQL(
    "INSERT INTO supervision_events ({cols}) SELECT {cols} FROM ms_journal_stage s"
    " WHERE NOT EXISTS (SELECT 1 FROM supervision_events e WHERE e.event_id = s.event_id) ORDER BY ord"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq"
).format(cols=_COLS)
_LAST_SEQ = sql.SQL("SELECT currval(pg_get_serial_sequence('supervision_events', 'seq'))")
_SEQ_NOW = sql.SQL("SELECT pg_sequence_last_value(pg_get_serial_sequence('supervision_events', 'seq')::regclass)")
_SEQS_OF = sql.SQL("SELECT event_id, seq FROM supervision_events WHERE event_id = ANY(%s)")
_NOTIFY = sql.SQL("SELECT pg_notify(%s, %s)")


Event = SupervisionEvent | JournalLine
Numbered = tuple[Event, int]  # an event and its journal seq


class Duplicate(Exception):
    """The straight path met an event already in the journal."""


class BatchInsert:
    """Ships batches on a connection it is given; keeps the registry fold between them."""

    def __init__(self) -> None:
        self._projection = Projection()
        self._loaded_nodes: set[str] = set()

    def ship(self, conn: psycopg.Connection[Any], lines: list[bytes], metas: list[object], careful: bool) -> int:
        """Insert ``lines`` (``metas``: their events where still in memory) in one transaction;
        how many were new (the others were in the journal already)."""
        if None in metas:  # read back from the spool's files: maybe written before a column was added
            lines = [current_line(line) if meta is None else line for line, meta in zip(lines, metas)]
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_LOCK, (APPEND_LOCK_KEY,))
                if careful:
                    rows = self._insert_careful(conn, cur, lines, metas)
                else:
                    rows = self._insert_direct(conn, cur, lines, metas)
                changed, removed = self._projection.take_changes()
                delete_records(cur, removed)
                upsert_records(cur, changed)
                if rows:
                    cur.execute(_NOTIFY, (NOTIFY_CHANNEL, str(rows[-1][1])))
        except BaseException:
            self.forget()
            raise
        return len(rows)

    @staticmethod
    def _events(lines: list[bytes], metas: list[object]) -> list[Event]:
        """The events of the lines: still in memory (the usual case), else parsed."""
        return [
            meta if isinstance(meta, SupervisionEvent) else JournalLine(line) for line, meta in zip(lines, metas)
        ]

    def _insert_direct(
        self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], lines: list[bytes], metas: list[object]
    ) -> list[Numbered]:
        """COPY straight into the journal, folding into the registry meanwhile; the events with their seqs.

        Under the append lock the new rows take the sequence's next numbers,
        so while the server ingests the COPY (a worker thread feeds it) this
        thread folds the events with those numbers. Afterwards the numbers are
        checked; if a writer that does not take the lock took some in between,
        the fold is done again with the real ones.
        """
        row = cur.execute(_SEQ_NOW).fetchone()
        first = int(row[0] or 0) + 1 if row is not None else 1
        events = self._events(lines, metas)
        expected = list(zip(events, range(first, first + len(events))))
        folded = self._knows_nodes(events)  # else the fold must query the registry: after the COPY
        try:
            with cur.copy(_COPY_DIRECT, writer=QueuedLibpqWriter(cur)) as copy:
                copy.write(b"".join(lines))
                if folded:
                    self._apply(expected)
        except psycopg.errors.UniqueViolation as exc:
            raise Duplicate from exc
        row = cur.execute(_LAST_SEQ).fetchone()
        assert row is not None
        last = int(row[0])
        rows = expected
        if last != first + len(events) - 1 or not self._numbered_as(cur, expected):
            found = {str(k): v for k, v in cur.execute(_SEQS_OF, ([str(e.event_id) for e in events],)).fetchall()}
            rows = sorted(((e, found[str(e.event_id)]) for e in events), key=lambda pair: pair[1])
            if folded:
                self.forget()
                folded = False
        if not folded:
            self._fold(conn, rows)
        return rows

    @staticmethod
    def _numbered_as(cur: psycopg.Cursor[Any], expected: list[Numbered]) -> bool:
        """The first and last events hold the seqs expected of them."""
        ends = [expected[0], expected[-1]]
        found = {str(k): v for k, v in cur.execute(_SEQS_OF, ([str(e.event_id) for e, _ in ends],)).fetchall()}
        return all(found.get(str(e.event_id)) == seq for e, seq in ends)

    def _insert_careful(
        self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], lines: list[bytes], metas: list[object]
    ) -> list[Numbered]:
        """Through the staging table, skipping events already journaled (folded when they were inserted)."""
        cur.execute(_STAGE)
        with cur.copy(_COPY_STAGE) as copy:
            copy.write(b"".join(lines))
        found = {str(k): v for k, v in cur.execute(_INSERT_STAGED).fetchall()}
        numbered = [(e, found.get(str(e.event_id))) for e in self._events(lines, metas)]
        rows = [(e, seq) for e, seq in numbered if seq is not None]
        self._fold(conn, rows)
        return rows

    def _knows_nodes(self, events: list[Event]) -> bool:
        loaded = self._loaded_nodes
        return all(e.node_id in loaded for e in events)

    def _fold(self, conn: psycopg.Connection[Any], rows: list[Numbered]) -> None:
        """Load the registry of nodes not seen yet, then fold ``rows`` into it."""
        for node_id in {e.node_id for e, _ in rows} - self._loaded_nodes:
            self._projection.load(load_node(conn, node_id))
            self._loaded_nodes.add(node_id)
        self._apply(rows)

    def _apply(self, rows: list[Numbered]) -> None:
        apply = self._projection.apply
        for i, (event, seq) in enumerate(rows):
            apply(event, seq)
            if not i % 512:
                time.sleep(0)  # let emitting threads have the GIL: they wait on us less than we on them

    def forget(self) -> None:
        """Drop the fold (it may hold changes that were rolled back); it reloads from the registry."""
        self._projection = Projection()
        self._loaded_nodes.clear()
