"""Finding a running node: its ``node.json``, its NATS URL, its database.

A client command reaches the node named by ``--nats-url`` /
``MISTERSMITH_NATS_URL`` (or ``nats.url`` in ``--config``); failing that,
the node serving the data directory, whose ``node.json`` says where it
listens. ``replay`` and ``migrate`` read PostgreSQL at ``--database-url`` /
``MISTERSMITH_DATABASE_URL``; failing that, the embedded server of the data
directory's node (its socket is named in ``postgres/postmaster.pid``).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from mistersmith.config import Settings
from mistersmith.data_dir import LOCK_FILE, read_node_file
from mistersmith.embedded.nats_auth import NatsUser
from mistersmith.journal.config import with_ssl

from ._errors import unreachable, usage

__all__ = ["data_dir", "database", "embedded_conninfo", "nats_urls", "read_node_file", "running_node"]

_PG_DIR = "postgres"
_PG_USER = "postgres"  # the embedded server's superuser (initdb -U postgres)


def data_dir(settings: Settings) -> Path:
    return Path(settings["node.data_dir"]).expanduser().resolve()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_node(directory: Path) -> dict[str, Any]:
    """The ``node.json`` of the node serving ``directory``; exit code 3 if none runs there."""
    info = read_node_file(directory)
    if info is None:
        raise unreachable(
            f"no running node in {directory} (no node.json); start one with `mistersmith serve --data-dir "
            f"{directory}`, or pass --nats-url"
        )
    if not _alive(info.get("pid")):
        raise unreachable(
            f"the node in {directory} is not running (its node.json names pid {info.get('pid')}, which is gone); "
            "start it again with `mistersmith serve`"
        )
    return info


def nats_urls(settings: Settings) -> tuple[tuple[str, ...], dict[str, str]]:
    """Where to reach NATS, and the user to connect as.

    The configured URL(s) with the configured credentials; else the running
    node's embedded server, as the client user whose credentials file that
    node names in ``node.json`` (``nats_credentials``), trusting the CA it
    names there (``nats_tls_ca``) when that server serves TLS.
    """
    configured: tuple[str, ...] | None = settings["nats.url"]
    if configured:
        return configured, {}
    info = running_node(data_dir(settings))
    url = info.get("nats_url")
    if not isinstance(url, str) or not url:
        raise unreachable(f"the node in {data_dir(settings)} wrote no NATS URL in node.json; pass --nats-url")
    user: dict[str, str] = {}
    creds = info.get("nats_credentials")
    if isinstance(creds, str) and not settings["nats.user"]:
        try:
            client = NatsUser.read(Path(creds))
        except (OSError, ValueError) as exc:
            raise unreachable(f"cannot read the NATS credentials file {creds} that the node in "
                              f"{data_dir(settings)} names: {getattr(exc, 'strerror', None) or exc}; run this "
                              "command as the node's user") from None
        user = {"user": client.user, "password": client.password}
    ca = info.get("nats_tls_ca")  # the CA of the embedded server's certificate, when it serves TLS
    if isinstance(ca, str) and ca:
        user["tls_ca"] = ca
    return tuple(u for u in url.split(",") if u), user


def embedded_conninfo(directory: Path) -> str | None:
    """A conninfo for the embedded PostgreSQL running in ``directory/postgres``, or None.

    Read from ``postmaster.pid``: line 1 the pid, line 4 the port, line 5 the
    socket directory, line 8 the status (``ready``).
    """
    try:
        lines = (directory / _PG_DIR / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not _alive(_int(lines[0])):
        return None
    port, socket_dir, listen = _int(lines[3]), lines[4].strip(), lines[5].strip()
    host = socket_dir or listen
    if port is None or not host:
        return None
    return make_conninfo(host=host, port=port, user=_PG_USER, dbname="postgres")


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


@contextmanager
def _data_dir_lock(directory: Path) -> Iterator[None]:
    """Hold the data directory's node lock (so no node starts meanwhile); exit 2 if a node holds it."""
    handle = open(directory / LOCK_FILE, "a+")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown pid"
            raise unreachable(
                f"a node ({holder}) is starting or stopping in {directory}; try again in a moment"
            ) from None
        yield
    finally:
        handle.close()


@contextmanager
def database(settings: Settings, *, create: bool = False) -> Iterator[tuple[str, str]]:
    """``(conninfo, description)`` of the journal's PostgreSQL.

    The configured URL; else the embedded server of the data directory's
    running node; else the data directory's embedded server, started for the
    duration (holding the node lock, so no node starts meanwhile) and stopped
    after. ``create``: set one up in the data directory if there is none yet
    (``migrate``); otherwise that is exit code 3.
    """
    url = with_ssl(settings["database.url"], settings["database.sslmode"], settings["database.sslrootcert"])
    if url:
        yield url, "the configured PostgreSQL"
        return
    directory = data_dir(settings)
    info = read_node_file(directory)
    if info is not None and _alive(info.get("pid")) and info.get("database") == "external":
        raise usage(
            f"the node in {directory} uses an external PostgreSQL; pass its URL with --database-url or "
            "MISTERSMITH_DATABASE_URL"
        )
    conninfo = embedded_conninfo(directory)
    if conninfo is not None:
        yield conninfo, f"the embedded PostgreSQL in {directory / _PG_DIR}"
        return
    if not create and not (directory / _PG_DIR / "PG_VERSION").exists():
        raise unreachable(
            f"no journal database in {directory} (no node has run there); start one with `mistersmith serve "
            f"--data-dir {directory}`, or pass --database-url"
        )
    directory.mkdir(parents=True, exist_ok=True)
    from mistersmith.embedded.postgres import EmbeddedPostgres

    with _data_dir_lock(directory):
        server = EmbeddedPostgres(directory / _PG_DIR)
        try:
            server.start()
        except Exception as exc:
            raise unreachable(f"could not start the embedded PostgreSQL in {directory / _PG_DIR}: {exc}") from exc
        try:
            yield server.conninfo(), f"the embedded PostgreSQL in {directory / _PG_DIR} (started for this command)"
        finally:
            server.stop()
