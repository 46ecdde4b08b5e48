"""Real PostgreSQL for the tests: an embedded server per session, a fresh database per test.

Load it from a test module with ``pytest_plugins = ["conftest_pg"]``.

- ``MISTERSMITH_TEST_DATABASE_URL`` points the tests at an external server
  instead (its role needs CREATEDB: each test gets its own database).
- ``pg_admin``: the session server's maintenance conninfo.
- ``fresh_db``: an empty database for one test (dropped after it).
- ``journal_db``: a database with the packaged migrations applied (cloned
  from a template migrated once per session).
- ``own_pg``: a server of the test's own, for tests that stop and restart it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal.migrate import migrate

TEMPLATE_DB = "ms_journal_template"


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("MISTERSMITH_TEST_DATABASE_URL")
    if url:
        yield make_conninfo(url)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", durable=False)
    server.start()
    try:
        yield server.conninfo()
    finally:
        server.stop()


def _create_db(admin: str, template: str | None = None) -> str:
    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("{} TEMPLATE {} STRATEGY FILE_COPY").format(query, sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(query)
    return name


def _drop_db(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def db_conninfo(admin: str, name: str) -> str:
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture
def fresh_db(pg_admin: str) -> Iterator[str]:
    name = _create_db(pg_admin)
    try:
        yield db_conninfo(pg_admin, name)
    finally:
        _drop_db(pg_admin, name)


@pytest.fixture(scope="session")
def journal_template(pg_admin: str) -> Iterator[str]:
    _drop_db(pg_admin, TEMPLATE_DB)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    migrate(db_conninfo(pg_admin, TEMPLATE_DB))
    try:
        yield TEMPLATE_DB
    finally:
        _drop_db(pg_admin, TEMPLATE_DB)


@pytest.fixture
def journal_db(pg_admin: str, journal_template: str) -> Iterator[str]:
    name = _create_db(pg_admin, journal_template)
    try:
        yield db_conninfo(pg_admin, name)
    finally:
        _drop_db(pg_admin, name)


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
