"""A node's data directory: the lock that makes it one node's at a time, its node id, its ``node.json``.

Light on purpose: the CLI finds a running node here (``read_node_file``, the
lock's name) without importing the node. What is written is private
(``mistersmith.files``); ``node.json`` carries no credentials (the node
redacts its URLs before it writes them).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO, Any

import orjson

from mistersmith.errors import MisterSmithError
from mistersmith.files import hold_lock, write_private

__all__ = ["LOCK_FILE", "NODE_FILE", "DataDirLockedError", "lock", "read_node_file", "stored_node_id",
           "write_node_file"]

NODE_FILE = "node.json"
LOCK_FILE = "node.lock"
NODE_ID_FILE = "node_id"


class DataDirLockedError(MisterSmithError):
    """Another node already serves this data directory."""

    code = "data_dir_locked"

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"another mistersmith node ({holder}) is already serving {data_dir}; stop it, or pass "
            "another --data-dir"
        )
        self.data_dir = data_dir


def lock(directory: Path) -> IO[str]:
    """Take ``directory``'s node lock for a node's life (close the handle to let go), or
    ``DataDirLockedError`` naming the process that holds it."""
    handle, holder = hold_lock(directory / LOCK_FILE)
    if handle is None:
        raise DataDirLockedError(directory, holder)
    return handle


def stored_node_id(directory: Path) -> str:
    """The node id kept in ``directory`` (made and kept at the first start), so a restart recovers the same agents."""
    path = directory / NODE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        node_id = f"node-{uuid.uuid4().hex[:12]}"
        write_private(path, (node_id + "\n").encode())
        return node_id


def write_node_file(directory: Path, info: dict[str, Any]) -> Path:
    """Write what a running node says about itself (URLs, node id, pid); returns the file's path."""
    path = directory / NODE_FILE
    write_private(path, orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return path


def read_node_file(directory: str | Path) -> dict[str, Any] | None:
    """What the node serving ``directory`` wrote about itself, or None (no node, or an unreadable file)."""
    try:
        info = orjson.loads((Path(directory) / NODE_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None
