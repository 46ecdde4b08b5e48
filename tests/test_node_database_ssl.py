"""libpq's sslmode and sslrootcert reach every connection the node makes, as written in database.url
or merged from database.sslmode / database.sslrootcert; an SSL refusal says what sslmode to change.
Against a real PostgreSQL (the embedded server on TCP, which has no SSL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mistersmith.cli import main
from mistersmith.config import load_settings
from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal import DatabaseUnreachableError
from mistersmith.journal.config import with_ssl
from mistersmith.node import Node

ROLE = "ms_sslmode"


@pytest.fixture
def tcp_pg(pg_tmp: Path) -> Iterator[str]:
    """A real PostgreSQL on 127.0.0.1 (without SSL); its URL."""
    server = EmbeddedPostgres(pg_tmp / "pg", tcp=True, durable=False)
    server.start()
    try:
        yield f"postgresql://{server.user}@127.0.0.1:{server.port}/postgres"
    finally:
        server.stop()


def test_with_ssl_leaves_the_url_alone_unless_a_setting_is_given() -> None:
    url = "postgresql://ms:pw@db.internal:5433/ms?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    assert with_ssl(url) is url and with_ssl(None, "require") is None
    merged = with_ssl(url, "verify-ca", "/other/ca.pem")
    assert merged is not None
    assert "sslmode=verify-ca" in merged and "sslrootcert=/other/ca.pem" in merged and "verify-full" not in merged
    assert "host=db.internal" in merged and "port=5433" in merged and "password=pw" in merged


def test_sslmode_in_the_url_reaches_every_connection_unchanged(node_dir: Path, tcp_pg: str) -> None:
    with psycopg.connect(tcp_pg, autocommit=True) as conn:  # a role of its own, to find the node's connections
        conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
    url = tcp_pg.replace("postgres@", f"{ROLE}@", 1) + "?sslmode=disable&connect_timeout=5"
    settings = load_settings({"node.data_dir": str(node_dir / "node"), "http.port": 0, "nats.embedded_port": 0,
                              "database.url": url})
    with Node(settings) as node:
        assert node.journal is not None and node.journal.conninfo == url, "the URL reaches psycopg as written"
        assert node.audit is not None and node.audit.conninfo == url
        assert node.states is not None and node.cluster is not None and node.cluster.conninfo == url
        with psycopg.connect(tcp_pg) as conn:
            rows = conn.execute("SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s "
                                "USING (pid) WHERE a.usename = %s", (ROLE,)).fetchall()
    names = {name for name, _ in rows}
    assert {"mistersmith-lease", "mistersmith-journal-writer"} <= names, names  # each part, by the URL's role
    assert not any(ssl for _, ssl in rows)


def test_sslmode_require_against_a_server_without_ssl_names_sslmode(node_dir: Path, tcp_pg: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"node.data_dir": str(node_dir / "node"), "http.port": 0, "nats.embedded_port": 0,
                              "database.url": tcp_pg, "database.sslmode": "require"})
    with pytest.raises(DatabaseUnreachableError) as caught:
        Node(settings).start()
    message = str(caught.value)
    assert "SSL was required" in message and "sslmode" in message and "database.sslmode" in message, message
    capsys.readouterr()
    code = main(["replay", "--database-url", f"{tcp_pg}?sslmode=require", "--json"])
    shown = "".join(capsys.readouterr())
    assert code == 3 and "sslmode" in shown and "SSL was required" in shown, shown
