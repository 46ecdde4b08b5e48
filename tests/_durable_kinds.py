"""Durable agent kinds for the node-level durability tests (``tests/test_durable_node.py``).

``serve --kind ledger=_durable_kinds:Ledger`` loads ``Ledger`` in a child node
(run with ``tests/`` as its working directory); the tests import it directly too.
"""

from __future__ import annotations

import os
from typing import Any

from mistersmith import Agent, command


def append_and_fsync(path: str, line: str) -> str:
    """The side effect: one line appended to ``path`` (one ``write`` with ``O_APPEND``: lines from
    many agent threads never interleave) and fsync'd before it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return line


class Ledger(Agent):
    """A durable ledger of operations: ``apply`` runs each op's effect once, then records the op.

    Config: ``effects_path``, the file the effects append to.
    """

    kind = "ledger"
    durable = True

    @command("apply")
    def apply(self, op_id: str) -> dict[str, Any]:
        ops = self.state.setdefault("ops", [])
        self.effect(op_id, append_and_fsync, str(self.config["effects_path"]), f"{self.agent_id} {op_id}")
        ops.append(op_id)  # no dedup on purpose: an op applied twice would show in the state
        return {"op_id": op_id, "n": len(ops)}

    @command("get")
    def get(self) -> dict[str, Any]:
        return {"ops": list(self.state.get("ops", []))}

    @command("note")
    def note(self, tag: str) -> list[str]:
        """A command that only changes the state (no effect): ``tag`` appended to ``notes``."""
        notes = self.state.setdefault("notes", [])
        notes.append(tag)
        return list(notes)

    @command("get_notes")
    def get_notes(self) -> list[str]:
        return list(self.state.get("notes", []))
