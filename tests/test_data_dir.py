"""``mistersmith.data_dir``: one node per data directory, its kept node id, its ``node.json``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mistersmith.data_dir import DataDirLockedError, lock, read_node_file, stored_node_id, write_node_file


def test_the_lock_is_one_holder_s_at_a_time_and_names_it(tmp_path: Path) -> None:
    held = lock(tmp_path)
    try:
        with pytest.raises(DataDirLockedError) as caught:
            lock(tmp_path)
        assert f"pid {os.getpid()}" in str(caught.value) and "--data-dir" in str(caught.value)
        assert caught.value.code == "data_dir_locked"
    finally:
        held.close()
    lock(tmp_path).close()  # free again once closed


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = stored_node_id(tmp_path)
    assert first.startswith("node-") and stored_node_id(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "node_id").stat().st_mode) == 0o600


def test_node_json_reads_back_and_a_missing_or_garbled_one_reads_as_none(tmp_path: Path) -> None:
    assert read_node_file(tmp_path) is None
    path = write_node_file(tmp_path, {"pid": 1, "node_id": "n1"})
    assert read_node_file(tmp_path) == {"pid": 1, "node_id": "n1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    assert read_node_file(tmp_path) is None
    path.write_text("[1, 2]")  # JSON, but not what a node writes
    assert read_node_file(tmp_path) is None
