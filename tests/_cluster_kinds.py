"""Agent kinds for the cluster fault tests (``tests/test_cluster_faults.py``).

``serve --kind tally=_cluster_kinds:Tally --kind job=_cluster_kinds:Job`` loads them in
a child node (run with ``tests/`` as its working directory).

Every reply says which process answered (``pid``): the test maps a node's pid to its
node id, so it knows for each reply which node handled it, durable agent or not.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mistersmith import Agent, command


class Tally(Agent):
    """A counter of operations: ``add`` appends its ``op`` to ``self.state["ops"]``.

    ``n`` is the number of ops applied; no dedup on purpose, so an op applied
    twice would show in the state. Durable when spawned with ``durable: true``.
    """

    kind = "tally"

    @command("add")
    def add(self, op: str) -> dict[str, Any]:
        ops = self.state.setdefault("ops", [])
        ops.append(op)
        self.state["n"] = len(ops)
        return {"n": len(ops), "op": op, "pid": os.getpid()}

    @command("get")
    def get(self) -> dict[str, Any]:
        return {"ops": list(self.state.get("ops", [])), "pid": os.getpid()}


class Job(Agent):
    """A task kind: ``run`` works for ``work_s`` (so tasks are still queued or in hand when a
    fault hits), then returns its input and the process that ran it."""

    kind = "job"

    @command("run")
    def run(self, x: int, work_s: float = 0.0) -> dict[str, Any]:
        time.sleep(work_s)  # the task's work, not a synchronisation
        return {"x": x, "pid": os.getpid()}
