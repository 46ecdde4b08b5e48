"""Real PostgreSQL for the tests: an embedded server per session, a fresh database per test.

``tests/conftest.py`` loads it (``pytest_plugins``) for every test module.

- ``MISTERSMITH_TEST_DATABASE_URL`` points the tests at an external server
  instead (its role needs CREATEDB: each test gets its own database).
- ``pg_admin``: the session server's maintenance conninfo.
- ``fresh_db``: an empty database for one test (dropped after it).
- ``journal_db``: a database with the packaged migrations applied (cloned
  from a template migrated once per session).
- ``own_pg``: a server of the test's own, for tests that stop and restart it;
  ``pg_tmp``: a directory for one, outside pytest's basetemp (see there).
- ``journal``: a ``Journal`` on ``journal_db``; ``node``: a ``JournalNode`` (a Runtime
  journaled to a Journal, node_id ``n1``), closed runtime first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mistersmith import Runtime, SupervisorSpec
from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal import Journal, JournalConfig, PoolConfig
from mistersmith.journal.migrate import migrate

TEMPLATE_DB = "ms_journal_template"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    url = os.environ.get("MISTERSMITH_TEST_DATABASE_URL")
    if url:
        yield make_conninfo(url)
        return
    # Not under pytest's basetemp: a concurrent pytest run may prune that while we run.
    home = Path(tempfile.mkdtemp(prefix="ms-test-pg-"))
    home.chmod(0o711)  # under root the server's user must traverse it (see ``pg_tmp``)
    server = EmbeddedPostgres(home / "data", durable=False)
    try:
        server.start()
        yield server.conninfo()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


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
def pg_tmp() -> Iterator[Path]:
    """A temporary directory for a PostgreSQL data dir, outside pytest's basetemp.

    Under root the server runs as another user, which must traverse the path,
    and the server never opens a directory it did not create: pytest's
    ``/tmp/pytest-of-<user>`` is 0700 (and re-tightened by every run), and so
    is a ``mkdtemp`` until we open it (0711: others may pass, not list).
    """
    home = Path(tempfile.mkdtemp(prefix="ms-pg-"))
    home.chmod(0o711)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def own_pg(pg_tmp: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(pg_tmp / "pg", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- journals and nodes -------------------------------------------------------------


def journal_config(url: str, **overrides: Any) -> JournalConfig:
    """A test journal: small pool, quick retries."""
    options: dict[str, Any] = dict(
        database_url=url, pool=PoolConfig(min_size=1, max_size=4, connect_timeout_s=5.0),
        retry_min_s=0.02, retry_max_s=0.2, close_flush_s=10.0,
    )
    options.update(overrides)
    return JournalConfig(**options)


@pytest.fixture
def journal(tmp_path: Path, journal_db: str) -> Iterator[Journal]:
    opened = Journal.open(tmp_path / "node", journal_config(journal_db))
    try:
        yield opened
    finally:
        opened.close()


class JournalNode:
    """A Runtime journaled to a Journal, closed in the right order.

    The root tolerates many restarts (tests crash agents on purpose).
    """

    def __init__(self, data_dir: Path, config: JournalConfig, node_id: str = "n1", **runtime: Any) -> None:
        runtime.setdefault("root", SupervisorSpec("root", intensity=1000))
        self.journal = Journal.open(data_dir, config)
        try:
            self.runtime = Runtime(node_id=node_id, sinks=[self.journal.sink], **runtime)
        except BaseException:
            self.journal.close()
            raise
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.runtime.close()
        finally:
            self.journal.close()


class NodeFactory:
    """``make_node(data_dir, url, **config)``: nodes closed at the end of the test."""

    def __init__(self) -> None:
        self.nodes: list[JournalNode] = []

    def __call__(self, data_dir: Path, url: str, *, node_id: str = "n1", runtime: dict[str, Any] | None = None,
                 **config: Any) -> JournalNode:
        made = JournalNode(data_dir, journal_config(url, **config), node_id, **(runtime or {}))
        self.nodes.append(made)
        return made

    def close(self) -> None:
        for made in reversed(self.nodes):
            made.close()


@pytest.fixture
def make_node() -> Iterator[NodeFactory]:
    factory = NodeFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def node(tmp_path: Path, journal_db: str, make_node: NodeFactory) -> JournalNode:
    return make_node(tmp_path / "node", journal_db)


@pytest.fixture
def make_journal() -> Iterator[Any]:
    """``make_journal(data_dir, url, **config)``: journals closed at the end of the test."""
    made: list[Journal] = []

    def factory(data_dir: Path, url: str, **config: Any) -> Journal:
        opened = Journal.open(data_dir, journal_config(url, **config))
        made.append(opened)
        return opened

    try:
        yield factory
    finally:
        for opened in reversed(made):
            opened.close()
