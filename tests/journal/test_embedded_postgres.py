"""The embedded PostgreSQL: starts, restarts on the same address, stops, leaves no orphan."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from _helpers import exits_within
from mistersmith.embedded.postgres import EmbeddedPostgres, EmbeddedPostgresError

pytest_plugins = ["conftest_pg"]


def test_start_query_restart_stop(pg_tmp: Path) -> None:
    server = EmbeddedPostgres(pg_tmp / "pg", durable=False)
    with server:
        conninfo = server.conninfo()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE survives (a int)")
            conn.execute("INSERT INTO survives VALUES (7)")
        first_pid = server.pid
        assert first_pid is not None
        server.stop()
        assert not server.running
        assert exits_within(first_pid, 10)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(conninfo, connect_timeout=2)
        server.start()
        assert server.conninfo() == conninfo, "a restart keeps the address"
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT a FROM survives").fetchone() == (7,)
    assert not server.running


def test_tcp_mode_listens_on_a_free_localhost_port(pg_tmp: Path) -> None:
    with EmbeddedPostgres(pg_tmp / "pg", durable=False, tcp=True) as server:
        assert "host=127.0.0.1" in server.conninfo() and server.port != 5432
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT inet_server_port()").fetchone() == (server.port,)


def test_long_data_dir_gets_a_short_socket_dir(pg_tmp: Path) -> None:
    deep = pg_tmp / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with EmbeddedPostgres(deep / "pg", durable=False) as server:
        host = psycopg.conninfo.conninfo_to_dict(server.conninfo())["host"]
        assert str(host) != str(deep / "pg") and len(str(host)) < 100
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        socket_dir = Path(str(host))
    assert not socket_dir.exists(), "the temporary socket dir is removed on stop"


def test_failed_start_names_the_data_dir(pg_tmp: Path) -> None:
    server = EmbeddedPostgres(pg_tmp / "pg", durable=False, settings={"no_such_setting": "1"})
    with pytest.raises(EmbeddedPostgresError) as caught:
        server.start()
    assert caught.value.data_dir == (pg_tmp / "pg").resolve()
    assert "no_such_setting" in caught.value.detail
    assert not server.running


CHILD = """
import sys
from mistersmith.embedded.postgres import EmbeddedPostgres
server = EmbeddedPostgres(sys.argv[1], durable=False)
server.start()
print(server.pid, flush=True)
sys.stdin.read()
"""


def test_no_orphan_postgres_when_the_owner_is_killed(pg_tmp: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(pg_tmp / "pg")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert not exits_within(pid, 0), "postgres runs while its owner lives"
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert exits_within(pid, 20), "postgres outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    # the next owner of the data directory starts cleanly
    with EmbeddedPostgres(pg_tmp / "pg", durable=False) as server:
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
