"""``SqliteStateStore``: durable agent state in one SQLite file, shared by the processes of one machine.

Choices (each says what it buys):

- **WAL journal mode**: readers never block the writer and a commit appends to
  one file; the mode is stored in the database, so every process uses it.
- **``synchronous=FULL``**: the WAL is fsync'd at every commit, so a call that
  returned survives a power cut, not only a crash of the process (``NORMAL``
  would lose the last commits on power loss).
- **``busy_timeout``**: a write waits up to its ``timeout_s`` for another
  process's write lock, then raises ``StateUnavailableError`` having changed
  nothing.
- **``BEGIN IMMEDIATE`` fencing**: every write takes the database's write lock
  first (two processes serialize there), then fences with a conditional update
  (``UPDATE owners ... WHERE agent_id = ? AND epoch = ?``); no row updated means
  a newer activation exists: rollback, ``FencedError``. The write, the pruning to
  ``keep`` versions and the fence commit together or not at all.
- **One connection per store**, shared by threads under one lock
  (``check_same_thread=False``); waiting for that lock counts against the
  call's ``timeout_s`` too.
- The file (and its directory, if missing) is created private (``0600`` /
  ``0700``, see ``mistersmith.files``); SQLite gives its ``-wal`` and ``-shm``
  files the database file's mode.
- Times are wall-clock Unix seconds (``REAL``): they are timestamps read by
  people and compared with ``effect_retention_s``, never used for intervals.
- The schema version is the database's ``user_version`` (``SCHEMA_VERSION``);
  a file made by a newer MisterSmith is refused rather than written.

Threads: every method may be called from any thread (and blocks it).
If a ``COMMIT`` itself fails, SQLite cannot tell us whether it reached the disk:
``StateUnavailableError`` then has ``outcome_unknown`` set. Any other failure
rolled back: nothing was written.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mistersmith.errors import FencedError, StateUnavailableError
from mistersmith.files import make_private_dirs, open_private

from .store import Activation, StateVersion

__all__ = ["SCHEMA_VERSION", "SqliteStateStore"]

SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS owners (
        agent_id TEXT PRIMARY KEY, node_id TEXT NOT NULL, epoch INTEGER NOT NULL,
        version INTEGER NOT NULL, since REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS states (
        agent_id TEXT NOT NULL, version INTEGER NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL,
        bytes INTEGER NOT NULL, node_id TEXT NOT NULL, committed_at REAL NOT NULL,
        PRIMARY KEY (agent_id, version)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS effects (
        agent_id TEXT NOT NULL, key TEXT NOT NULL, epoch INTEGER NOT NULL, outcome TEXT NOT NULL,
        recorded_at REAL NOT NULL, PRIMARY KEY (agent_id, key)) WITHOUT ROWID""",
)

_COLUMNS = "agent_id, version, epoch, state, bytes, node_id, committed_at"
_FENCE = "UPDATE owners SET epoch = epoch WHERE agent_id = ? AND epoch = ?"
_PRUNE = ("DELETE FROM states WHERE agent_id = ? AND version NOT IN "
          "(SELECT version FROM states WHERE agent_id = ? ORDER BY version DESC LIMIT ?)")
_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}


class SqliteStateStore:
    """Implements ``mistersmith.state.StateStore`` in the SQLite file ``path`` (see the module docstring).

    ``timeout_s`` bounds opening, ``activate``, ``read`` and ``versions``; writes take their own.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._closed = False
        what = f"the state store {str(self.path)!r}"
        try:
            make_private_dirs(self.path.parent)
            os.close(open_private(self.path, os.O_RDWR))
            conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateUnavailableError("*", what, f"cannot open it: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn, what)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _unavailable("*", what, timeout_s, exc) from exc
            raise
        self._conn = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection, what: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if found > SCHEMA_VERSION:
                raise StateUnavailableError(
                    "*", what, f"its schema is version {found}, newer than this MisterSmith's {SCHEMA_VERSION}; "
                    "open it with the MisterSmith that wrote it")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")  # a constant: PRAGMA takes no parameters
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # -- the port ------------------------------------------------------------------

    def activate(
        self, agent_id: str, node_id: str, *, reset: bool = False, effect_retention_s: float | None = None,
        keep: int | None = None,
    ) -> Activation:
        with self._write(agent_id, "its activation", self._timeout_s) as conn:
            now = time.time()
            row = conn.execute("SELECT epoch, version FROM owners WHERE agent_id = ?", (agent_id,)).fetchone()
            epoch, version = (row[0] + 1, row[1]) if row else (1, 0)
            if effect_retention_s is not None:
                conn.execute("DELETE FROM effects WHERE agent_id = ? AND recorded_at < ?",
                             (agent_id, now - effect_retention_s))
            if reset and version:
                version += 1
                conn.execute("DELETE FROM states WHERE agent_id = ?", (agent_id,))
                conn.execute(f"INSERT INTO states ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (agent_id, version, epoch, "{}", 2, node_id, now))
            conn.execute(
                "INSERT INTO owners (agent_id, node_id, epoch, version, since) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET node_id = excluded.node_id, epoch = excluded.epoch, "
                "version = excluded.version, since = excluded.since",
                (agent_id, node_id, epoch, version, now))
            if keep is not None:
                conn.execute("DELETE FROM states WHERE agent_id = ? AND version <= ?", (agent_id, version - keep))
            latest = conn.execute("SELECT state FROM states WHERE agent_id = ? ORDER BY version DESC LIMIT 1",
                                  (agent_id,)).fetchone()
            effects = conn.execute("SELECT key, outcome FROM effects WHERE agent_id = ? ORDER BY key",
                                   (agent_id,)).fetchall()
        return Activation(epoch=epoch, version=version, state=latest[0].encode() if latest else None,
                          effects={key: outcome.encode() for key, outcome in effects})

    def commit(
        self, agent_id: str, epoch: int, version: int, state: bytes, *, node_id: str, keep: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        what = f"state version {version}"
        with self._write(agent_id, what, timeout_s) as conn:
            fenced = conn.execute("UPDATE owners SET version = ? WHERE agent_id = ? AND epoch = ?",
                                  (version, agent_id, epoch))
            if fenced.rowcount == 0:
                raise FencedError(agent_id, epoch)
            try:
                conn.execute(f"INSERT INTO states ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (agent_id, version, epoch, state.decode(), len(state), node_id, time.time()))
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"agent {agent_id!r}: {what} is already committed; versions only grow") from exc
            conn.execute(_PRUNE, (agent_id, agent_id, max(keep, 1)))

    def record_effect(self, agent_id: str, epoch: int, key: str, outcome: bytes, *, timeout_s: float = 5.0) -> None:
        with self._write(agent_id, f"effect {key!r}", timeout_s) as conn:
            if conn.execute(_FENCE, (agent_id, epoch)).rowcount == 0:
                raise FencedError(agent_id, epoch)
            conn.execute(
                "INSERT INTO effects (agent_id, key, epoch, outcome, recorded_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (agent_id, key) DO UPDATE SET epoch = excluded.epoch, outcome = excluded.outcome, "
                "recorded_at = excluded.recorded_at",
                (agent_id, key, epoch, outcome.decode(), time.time()))

    def forget_effect(self, agent_id: str, epoch: int, key: str, *, timeout_s: float = 5.0) -> None:
        with self._write(agent_id, f"forgetting effect {key!r}", timeout_s) as conn:
            if conn.execute(_FENCE, (agent_id, epoch)).rowcount == 0:
                raise FencedError(agent_id, epoch)
            conn.execute("DELETE FROM effects WHERE agent_id = ? AND key = ?", (agent_id, key))

    def read(self, agent_id: str, version: int | None = None) -> StateVersion | None:
        query = f"SELECT {_COLUMNS} FROM states WHERE agent_id = ?"
        params: tuple[Any, ...] = (agent_id,)
        if version is not None:
            query, params = query + " AND version = ?", (agent_id, version)
        rows = self._query(agent_id, "reading its state", query + " ORDER BY version DESC LIMIT 1", params)
        return _version(rows[0]) if rows else None

    def versions(self, agent_id: str | None = None) -> list[StateVersion]:
        if agent_id is None:
            rows = self._query("*", "listing state versions",
                               f"SELECT {_COLUMNS} FROM states ORDER BY agent_id, version", ())
        else:
            rows = self._query(agent_id, "listing its state versions",
                               f"SELECT {_COLUMNS} FROM states WHERE agent_id = ? ORDER BY version", (agent_id,))
        return [_version(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def _held(self, agent_id: str, what: str, timeout_s: float) -> Iterator[sqlite3.Connection]:
        """This store's connection, held by this thread (at most ``timeout_s`` spent waiting for it)."""
        if not self._lock.acquire(timeout=max(timeout_s, 0.0)):
            raise StateUnavailableError(
                agent_id, what, f"this store's connection stayed busy for {timeout_s:.2f} s (other threads)")
        try:
            if self._closed:
                raise StateUnavailableError(agent_id, what, "the state store is closed")
            yield self._conn
        finally:
            self._lock.release()

    @contextmanager
    def _write(self, agent_id: str, what: str, timeout_s: float) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed (fsync'd) when the block ends, else rolled back."""
        deadline = time.monotonic() + timeout_s
        with self._held(agent_id, what, timeout_s) as conn:
            busy_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")  # an int: PRAGMA takes no parameters
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _unavailable(agent_id, what, timeout_s, exc) from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                _rollback(conn)
                raise _unavailable(agent_id, what, timeout_s, exc) from exc
            except BaseException:
                _rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StateUnavailableError(agent_id, what, f"its COMMIT failed: {exc}",
                                            outcome_unknown=True) from exc

    def _query(self, agent_id: str, what: str, query: str, params: tuple[Any, ...]) -> list[Any]:
        with self._held(agent_id, what, self._timeout_s) as conn:
            try:
                return conn.execute(query, params).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(agent_id, what, self._timeout_s, exc) from exc


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # not committed, so not written: SQLite undoes it on the next open


def _unavailable(agent_id: str, what: str, timeout_s: float, exc: sqlite3.Error) -> StateUnavailableError:
    if getattr(exc, "sqlite_errorname", "") in _BUSY:
        detail = f"the database stayed locked for {timeout_s:.2f} s (another process is writing): {exc}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return StateUnavailableError(agent_id, what, detail)


def _version(row: tuple[Any, ...]) -> StateVersion:
    agent_id, version, epoch, state, size, node_id, committed_at = row
    return StateVersion(agent_id, version, epoch, orjson.loads(state), size, node_id,
                        datetime.fromtimestamp(committed_at, UTC))
