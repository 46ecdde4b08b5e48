"""What a node writes in its data directory is its user's alone: files 0600, directories 0700.

Under root the embedded PostgreSQL runs as ``pgserver``, which must pass
through the data directory to its cluster: the node opens the data
directory it created to that user's group only (0710), and changes no
directory above it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from mistersmith.config import load_settings
from mistersmith.node import Node

AS_ROOT = os.geteuid() == 0


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _walk(top: Path) -> dict[Path, os.stat_result]:
    """Every entry below ``top`` (not following links), with ``top`` itself. A running node's writers
    replace files by renaming a ``.tmp`` over them (the audit log's ``shipped.pos``): one that went
    between the listing and its ``lstat`` is left out; its successor is listed by the next walk."""
    found = {top: top.lstat()}
    for dirpath, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            try:
                found[path] = path.lstat()
            except FileNotFoundError:
                if not name.endswith(".tmp"):
                    raise
    return found


def _too_open(entries: dict[Path, os.stat_result], data_dir: Path) -> list[str]:
    wrong = []
    for path, st in entries.items():
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if path == data_dir and AS_ROOT:
            # pgserver's group may pass through (never list) to reach postgres/
            if mode != 0o710 or st.st_gid != pwd.getpwnam("pgserver").pw_gid:
                wrong.append(f"{path} {mode:04o} gid {st.st_gid}")
        elif mode & 0o077:
            wrong.append(f"{path} {mode:04o}")
    return wrong


def test_every_file_and_directory_the_node_writes_is_private(node_dir: Path) -> None:
    data_dir = node_dir / "data"
    above = {p: stat.S_IMODE(p.stat().st_mode) for p in [node_dir, *node_dir.parents]}
    previous = os.umask(0o022)  # a usual umask: the node's files must not depend on it
    try:
        with Node(load_settings({"node.data_dir": str(data_dir), "http.port": 0})) as node:
            assert _umask() == 0o077, "the node runs with umask 077"
            assert node.runtime is not None and node.journal is not None
            node.runtime.spawn("echo", agent_id="a1")  # events in the spool, shipped
            assert node.journal.flush(10)
            running = _walk(data_dir)
        assert _umask() == 0o022, "stop gives the process its umask back"
    finally:
        os.umask(previous)
    stopped = _walk(data_dir)

    names = {p.relative_to(data_dir).as_posix() for p in [*running, *stopped]}
    assert {"node.json", "node_id", "node.lock", "journal/LOCK", "journal/000000000001.spool",
            "journal/shipped.pos", "nats/nats-server.log", "postgres/server.log", "postgres/PG_VERSION",
            "postgres/.s.PGSQL.5432"} <= names, sorted(names)
    assert any(stat.S_ISSOCK(st.st_mode) for st in running.values()), "the PostgreSQL socket is checked too"
    assert _too_open(running, data_dir) == [] and _too_open(stopped, data_dir) == []
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in above} == above, "no directory above was changed"
