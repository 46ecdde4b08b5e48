"""The embedded PostgreSQL: starts, restarts on the same address, stops, leaves no orphan."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from _helpers import exits_within
from mistersmith.embedded.postgres import DataDirUnreachableError, EmbeddedPostgres, EmbeddedPostgresError


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


as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as pgserver only under root")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@as_root
def test_under_root_a_data_dir_pgserver_cannot_reach_is_refused_and_nothing_above_is_opened(pg_tmp: Path) -> None:
    closed = pg_tmp / "closed"  # made by us, not by the server: like /root, or pytest's basetemp
    closed.mkdir()
    closed.chmod(0o700)
    server = EmbeddedPostgres(closed / "deeper" / "pg", durable=False)
    try:
        with pytest.raises(DataDirUnreachableError) as caught:
            server.start()
    finally:
        server.stop()
    assert caught.value.code == "data_dir_unreachable" and caught.value.user == "pgserver"
    assert caught.value.blocked == (closed,)
    message = str(caught.value)
    assert f"{closed} (mode 0700, owner root) does not let it through" in message
    assert f"chmod o+x {closed}" in message and "run mistersmith as another user than root" in message
    assert _mode(closed) == 0o700, "a directory the server did not create is never changed"
    assert not server.running


@as_root
def test_under_root_only_the_directories_it_made_are_opened_and_only_to_pgserver(pg_tmp: Path) -> None:
    data_dir = pg_tmp / "made-here" / "pg"
    above = {p: _mode(p) for p in pg_tmp.resolve().parents} | {pg_tmp: _mode(pg_tmp)}
    account = pwd.getpwnam("pgserver")
    with EmbeddedPostgres(data_dir, durable=False) as server:
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        status = Path(f"/proc/{server.pid}/status").read_text()
    assert {p: _mode(p) for p in above} == above, "directories that let pgserver through stay as they were"
    made = (pg_tmp / "made-here").stat()
    assert (stat.S_IMODE(made.st_mode), made.st_gid) == (0o710, account.pw_gid), "pass-through for pgserver only"
    assert (data_dir.stat().st_uid, _mode(data_dir)) == (account.pw_uid, 0o700)
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert set(gids) == {str(account.pw_gid)}, "the server runs with pgserver's group, not root's"
