"""The journal's errors: few, precise, and carrying the values that explain them.

All subclass ``MisterSmithError`` (via ``JournalError``). The PostgreSQL or OS
error behind one, when there is one, is in ``__cause__``.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.errors import MisterSmithError

__all__ = [
    "DatabaseNotConfiguredError",
    "DatabaseUnreachableError",
    "JournalClosedError",
    "JournalError",
    "MigrationChecksumError",
    "MigrationError",
    "SpoolError",
    "SpoolUnwritableError",
]


class JournalError(MisterSmithError):
    """Something external broke the journal (PostgreSQL, the spool's disk)."""

    code = "journal"


class DatabaseUnreachableError(JournalError):
    """PostgreSQL could not be reached when the journal opened.

    ``target`` says where (host, port, database; never the password),
    ``detail`` what the driver said. The PostgreSQL error is in ``__cause__``.
    """

    code = "database_unreachable"

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(
            f"cannot reach PostgreSQL at {target}: {detail}; check the URL "
            "(MISTERSMITH_DATABASE_URL), or leave it unset and a node starts a server of its own"
        )
        self.target = target
        self.detail = detail


class DatabaseNotConfiguredError(JournalError):
    """``Journal.open`` was given no database: no URL, and no ``MISTERSMITH_DATABASE_URL``.

    The journal never starts a server itself; a ``Node`` starts one of its own
    (``EmbeddedPostgres``, in its data directory) when no URL is set.
    """

    code = "database_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "the journal has no PostgreSQL to write to: pass JournalConfig(database_url=...), set "
            "MISTERSMITH_DATABASE_URL, or start an EmbeddedPostgres(directory) and pass its conninfo() "
            "(a mistersmith Node does this when no URL is set)"
        )


class MigrationError(JournalError):
    """A migration file is malformed or failed; it was rolled back.

    ``filename`` names the file, ``detail`` says what happened (with the
    PostgreSQL error message when PostgreSQL refused it).
    """

    code = "migration_failed"

    def __init__(self, filename: str, detail: str) -> None:
        super().__init__(f"migration {filename}: {detail}")
        self.filename = filename
        self.detail = detail


class MigrationChecksumError(MigrationError):
    """An applied migration's file has changed since; refusing to go on.

    Never edit an applied migration: add a new ``NNN_description.sql`` file.
    """

    code = "migration_checksum"

    def __init__(self, filename: str, applied: str, found: str) -> None:
        super().__init__(
            filename,
            f"was applied with checksum {applied[:12]}... but the file now has {found[:12]}...; "
            "applied migrations must not change, add a new migration instead",
        )
        self.applied = applied
        self.found = found


class SpoolError(JournalError):
    """The local write-ahead spool cannot be used (locked by another process, unreadable)."""

    code = "spool"

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"journal spool {str(path)!r}: {detail}")
        self.path = path
        self.detail = detail


class SpoolUnwritableError(JournalError):
    """The spool's last write failed (a full disk, an I/O error): new work is refused until one succeeds.

    Nothing acknowledged is at risk: what was acknowledged is on disk already,
    and what waits is written as soon as the disk takes it. Free space on the
    spool's disk; the node accepts new work again by itself.
    """

    code = "unavailable"

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"journal spool {str(path)!r} cannot be written ({detail}): new work is refused until it can; "
            "free space on its disk (what was acknowledged is on disk already)"
        )
        self.path = path
        self.detail = detail


class JournalClosedError(JournalError):
    """You closed the journal; open a new one."""

    code = "closed"

    def __init__(self, what: str) -> None:
        super().__init__(f"the journal is closed; {what} needs an open Journal")
        self.what = what
