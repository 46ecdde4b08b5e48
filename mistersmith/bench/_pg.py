"""The journal suite's PostgreSQL: fresh migrated databases on one server, and the raw baseline.

The server is an embedded one in the suite's temporary directory, or
``MISTERSMITH_DATABASE_URL`` (its role needs CREATEDB: each round gets a
fresh database). ``copy_rows`` is the raw psycopg side of the write and
replay figures: one binary ``COPY`` of event rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal import migrate
from mistersmith.journal.codec import COLUMNS
from mistersmith.journal.config import DATABASE_URL_ENV
from mistersmith.supervisors import SupervisionEvent

__all__ = ["Databases", "copy_rows", "event_rows", "workspace"]

_TYPES = ("uuid", "timestamptz", "text", "int8", "text", "text", "text", "text", "text", "int4", "jsonb")


class Databases:
    """Fresh databases, migrated, on one server (embedded unless a URL is set)."""

    def __init__(self, home: Path) -> None:
        url = os.environ.get(DATABASE_URL_ENV)
        self.server: EmbeddedPostgres | None = None
        if url:
            self.admin = make_conninfo(url)
        else:
            self.server = EmbeddedPostgres(home / "pg", durable=True)
            self.server.start()
            self.admin = self.server.conninfo()
        self.created: list[str] = []

    def fresh(self) -> str:
        name = f"ms_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        params = conninfo_to_dict(self.admin)
        params["dbname"] = name
        conninfo = make_conninfo(**params)  # type: ignore[arg-type]
        migrate(conninfo)
        return conninfo

    def close(self) -> None:
        try:
            with psycopg.connect(self.admin, autocommit=True) as conn:
                for name in self.created:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            if self.server is not None:
                self.server.stop()


@contextmanager
def workspace() -> Iterator[tuple[Path, Databases]]:
    home = Path(tempfile.mkdtemp(prefix="ms-bench-journal-"))
    home.chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
    dbs = Databases(home)
    try:
        yield home, dbs
    finally:
        try:
            dbs.close()
        finally:
            shutil.rmtree(home, ignore_errors=True)


def event_rows(events: list[SupervisionEvent]) -> list[tuple[Any, ...]]:
    return [
        (e.event_id, e.occurred_at, e.node_id, e.seq, e.supervisor, e.agent_id, e.kind, e.event_type, e.reason,
         e.restart_count, Jsonb(e.data))
        for e in events
    ]


_COPY = sql.SQL("COPY supervision_events ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)


def copy_rows(conninfo: str, rows: list[tuple[Any, ...]]) -> float:
    """One raw binary COPY of ``rows`` in one transaction; returns rows per second."""
    with psycopg.connect(conninfo) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(list(_TYPES))
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - t0)
