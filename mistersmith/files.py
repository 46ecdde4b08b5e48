"""Private files and directories: what MisterSmith writes is for its own user only.

A data directory holds a node's state (agent configs and journaled events,
where it listens, its id), so everything MisterSmith creates in it is made
``0600`` (files) and ``0700`` (directories) here, whatever the process's
umask: a ``Journal`` or an embedded server used without a ``Node`` is as
private as a node. (A ``Node`` also sets the umask to ``UMASK`` while it
runs, for the files other code creates there.) A file of ours found with
wider modes (written by an earlier version) is tightened when it is opened.

``make_private_dirs`` returns the directories it created: only those may
the caller open further (to the embedded PostgreSQL's own user, see
``mistersmith.embedded.postgres.let_server_through``). A directory someone
else made is never changed.

Threads: every function may be called from any thread.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import IO

__all__ = ["DIR_MODE", "FILE_MODE", "UMASK", "hold_lock", "make_private_dirs", "open_private", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077
"""The umask a ``Node`` sets while it runs: nothing it creates is readable by others."""


def make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents, each ``0700``; return those created (outermost first)."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir(DIR_MODE)
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours
        created.append(directory)
    if not path.is_dir():
        path.mkdir(DIR_MODE, parents=True, exist_ok=True)  # raises the right error (a file in the way)
    return created


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` with mode ``0600``; a file of ours with wider modes is tightened.

    Also an ``opener`` for ``open()``: ``open(path, "ab", opener=open_private)``.
    """
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & UMASK and st.st_uid == os.geteuid() and stat.S_ISREG(st.st_mode):
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~UMASK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a ``.tmp`` file renamed over it), mode ``0600``."""
    tmp = path.with_name(path.name + ".tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def hold_lock(path: Path) -> tuple[IO[str] | None, str]:
    """Take the exclusive lock of ``path`` (created private) and write our pid in it: ``(handle, "")``
    while we hold it (keep the handle open), or ``(None, "pid N")`` naming the process that holds it."""
    handle = open(path, "a+", opener=open_private)  # noqa: SIM115 (held by the caller)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown pid"
        handle.close()
        return None, holder
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle, ""
