"""Private files and directories: 0600 and 0700 whatever the umask; only what we made is ours."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistersmith.files import make_private_dirs, open_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest usual umask: what we create must not depend on it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_dirs_are_0700_and_only_the_ones_created_are_named(tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    created = make_private_dirs(tmp_path / "there" / "a" / "b")
    assert created == [tmp_path / "there" / "a", tmp_path / "there" / "a" / "b"]
    assert mode(tmp_path / "there" / "a") == mode(tmp_path / "there" / "a" / "b") == 0o700
    assert mode(tmp_path / "there") == 0o755, "an existing directory is left as it is"
    assert make_private_dirs(tmp_path / "there" / "a" / "b") == []
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        make_private_dirs(tmp_path / "file")


@pytest.mark.usefixtures("open_umask")
def test_files_are_0600_and_ours_are_tightened(tmp_path: Path) -> None:
    write_private(tmp_path / "node.json", b"{}")
    assert mode(tmp_path / "node.json") == 0o600 and (tmp_path / "node.json").read_bytes() == b"{}"
    assert not (tmp_path / "node.json.tmp").exists()
    old = tmp_path / "segment"
    old.write_bytes(b"from an earlier version")
    old.chmod(0o644)
    fd = open_private(old, os.O_WRONLY | os.O_APPEND)
    os.close(fd)
    assert mode(old) == 0o600 and old.read_bytes() == b"from an earlier version"
    with open(tmp_path / "server.log", "ab", opener=open_private) as log:
        log.write(b"x")
    assert mode(tmp_path / "server.log") == 0o600
