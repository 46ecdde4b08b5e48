"""``mistersmith config`` shows no secret; ``serve`` as root refuses a data dir ``pgserver`` cannot reach."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_helpers import call, processes_using, run_cli

from mistersmith.cli import EXIT_OK, EXIT_USAGE

SECRETS = {
    "MISTERSMITH_NATS_URL": "nats://ms:url-pass-1@nats-1.internal:4222,tls://tok-2@nats-2.internal:4222",
    "MISTERSMITH_NATS_PASSWORD": "nats-pass-3",
    "MISTERSMITH_NATS_TOKEN": "nats-token-4",
    "MISTERSMITH_NATS_TLS_CERT": "/certs/client.pem",  # with its key, or the settings are refused
    "MISTERSMITH_NATS_TLS_KEY": "/keys/key-5.pem",
    "MISTERSMITH_DATABASE_URL": "postgresql://ms:db-pass-6@db.internal/ms",
    "MISTERSMITH_API_TOKEN": "api-token-7",
}
MARKERS = ("url-pass-1", "tok-2", "nats-pass-3", "nats-token-4", "key-5", "db-pass-6", "api-token-7")


def test_config_shows_no_secret_but_the_nats_servers(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MISTERSMITH_NATS_USER", "ms")
    text = call(capsys, "config")
    doc = call(capsys, "config", "--json")
    flag = call(capsys, "config", "--nats-url", "nats://flag-user:flag-pass-8@flagged:4222", "--json")
    assert text.code == doc.code == flag.code == EXIT_OK
    for shown in (text.out + text.err, doc.out + doc.err, flag.out + flag.err):
        assert not [m for m in (*MARKERS, "flag-pass-8", "flag-user") if m in shown]
    servers = ["nats://nats-1.internal:4222", "tls://nats-2.internal:4222"]
    assert doc.json()["settings"]["nats"]["url"] == servers, "the servers show, without their userinfo"
    assert flag.json()["settings"]["nats"]["url"] == ["nats://flagged:4222"]
    assert 'url = ["nats://nats-1.internal:4222", "tls://nats-2.internal:4222"]  # from $MISTERSMITH_NATS_URL' in (
        text.out)
    shown = doc.json()["settings"]
    assert shown["database"]["url"] == shown["http"]["api_token"] == shown["nats"]["password"] == "***"
    assert shown["nats"]["token"] == shown["nats"]["tls_key"] == "***" and shown["nats"]["user"] == "ms"


@pytest.fixture
def closed_home() -> Iterator[Path]:
    """A 0700 directory this test made (as /root is, or pytest's basetemp), outside the basetemp."""
    home = Path(tempfile.mkdtemp(prefix="ms-closed-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the embedded PostgreSQL runs as pgserver only under root")
def test_serve_as_root_refuses_a_data_dir_pgserver_cannot_reach(closed_home: Path) -> None:
    assert stat.S_IMODE(closed_home.stat().st_mode) == 0o700
    data_dir = closed_home / "node"
    done = run_cli("serve", "--data-dir", str(data_dir), "--http-port", "0")
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    assert f"{closed_home} (mode 0700, owner root) does not let it through" in done.stderr
    assert f"chmod o+x {closed_home}" in done.stderr and "'pgserver'" in done.stderr
    assert stat.S_IMODE(closed_home.stat().st_mode) == 0o700, "a directory the node did not create is unchanged"
    assert processes_using(data_dir) == [], "the embedded nats-server it had started is gone"
