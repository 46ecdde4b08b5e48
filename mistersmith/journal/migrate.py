"""The migrations runner: ``NNN_description.sql`` files, applied once, in order.

- The files ship as package data (``mistersmith.migrations``) and are read with
  ``importlib.resources``; another directory can be passed for tests.
- Each pending file runs whole (never split on ``;``, so function bodies work)
  in its own transaction, and is recorded in ``schema_versions`` (version,
  name, checksum, applied_at) in that same transaction.
- Every transaction first takes a transaction-level advisory lock
  (``MIGRATION_LOCK_KEY``), so migrators on several nodes take turns; a file
  another node applied meanwhile is seen and skipped.
- An applied file whose checksum (SHA-256 of its bytes) changed is refused
  with ``MigrationChecksumError`` before anything runs.
- A failing file rolls back and raises ``MigrationError`` naming the file and
  the PostgreSQL error; the files before it stay applied.
- Statements that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``)
  are not supported.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .errors import MigrationChecksumError, MigrationError

__all__ = ["MIGRATION_LOCK_KEY", "Migration", "applied_migrations", "load_migrations", "migrate"]

logger = logging.getLogger("mistersmith.journal.migrate")

MIGRATION_LOCK_KEY = 0x4D534D4947  # "MSMIG": the advisory lock all migrators share
_FILENAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

_CREATE_VERSIONS = sql.SQL(
    """
    CREATE TABLE IF NOT EXISTS schema_versions (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
    """
)
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``NNN_description.sql``."""

    version: int
    name: str
    filename: str
    sql: str
    checksum: str


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """The migration files in ``source`` (default: the packaged ones), by version.

    Files not ending in ``.sql`` are ignored; a ``.sql`` file with a bad name
    or a duplicated version raises ``MigrationError``.
    """
    folder: Traversable | Path = source if source is not None else resources.files("mistersmith.migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILENAME.match(entry.name)
        if match is None:
            raise MigrationError(entry.name, "bad file name; use NNN_description.sql (3 digits, lowercase a-z0-9_)")
        raw = entry.read_bytes()
        version = int(match.group(1))
        if version in found:
            raise MigrationError(entry.name, f"version {version:03d} is also used by {found[version].filename}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(entry.name, f"is not UTF-8 ({exc})") from exc
        found[version] = Migration(version, match.group(2), entry.name, text, hashlib.sha256(raw).hexdigest())
    return [found[v] for v in sorted(found)]


def applied_migrations(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    """``{version: (name, checksum)}`` of the migrations recorded in ``schema_versions``."""
    exists = conn.execute("SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, name, checksum FROM schema_versions ORDER BY version").fetchall()
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def _check(migrations: Iterable[Migration], applied: dict[int, tuple[str, str]]) -> None:
    for m in migrations:
        recorded = applied.get(m.version)
        if recorded is not None and recorded[1] != m.checksum:
            raise MigrationChecksumError(m.filename, recorded[1], m.checksum)


def migrate(target: str | psycopg.Connection[Any], source: Traversable | Path | None = None) -> list[Migration]:
    """Apply the pending migrations; return those this call applied, in order.

    ``target`` is a conninfo/URL or an open connection (which must not be in
    a transaction; it is left in autocommit mode).
    """
    migrations = load_migrations(source)
    if isinstance(target, str):
        with psycopg.connect(target, autocommit=True) as conn:
            return _migrate(conn, migrations)
    target.autocommit = True
    return _migrate(target, migrations)


def _migrate(conn: psycopg.Connection[Any], migrations: list[Migration]) -> list[Migration]:
    with conn.transaction():
        conn.execute(_LOCK, (MIGRATION_LOCK_KEY,))
        conn.execute(_CREATE_VERSIONS)
        applied = applied_migrations(conn)
    _check(migrations, applied)
    known = {m.version for m in migrations}
    for version in sorted(set(applied) - known):
        logger.warning(
            "schema_versions has migration %03d_%s, which this version does not ship; "
            "a newer node applied it", version, applied[version][0],
        )
    done: list[Migration] = []
    for m in migrations:
        if m.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(_LOCK, (MIGRATION_LOCK_KEY,))
                row = conn.execute(
                    "SELECT checksum FROM schema_versions WHERE version = %s", (m.version,)
                ).fetchone()
                if row is not None:  # another node applied it while we waited
                    _check([m], {m.version: (m.name, str(row[0]))})
                    continue
                conn.execute(m.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_versions (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        except psycopg.Error as exc:
            diag = exc.diag
            where = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
            message = diag.message_primary or str(exc).strip()
            raise MigrationError(m.filename, f"failed and was rolled back: {message}{where}") from exc
        logger.info("applied migration %s", m.filename, extra={"migration": m.filename})
        done.append(m)
    return done
