"""The agent kinds the ``faults`` suite (and ``tests/faults/``) runs in its ``serve`` children.

``serve --kind tally=mistersmith.bench._fault_kinds:Tally --kind job=mistersmith.bench._fault_kinds:Job``.

- ``tally``: ``add`` appends its ``op`` to ``self.state["ops"]`` (no dedup on
  purpose: an op applied twice shows); ``get`` returns the ops; ``fail``
  raises, so each one makes supervision events (``failed``, ``restarted``).
  Durable when spawned with ``durable: true``: then ``add`` is committed
  before its reply leaves.
- ``job``: a task kind; ``run`` works for ``work_s`` and returns its input.

Handlers run in the agent's thread; what they raise is the command's error
reply (and, for ``fail``, a crash the agent's supervisor handles).
"""

from __future__ import annotations

import time
from typing import Any

from mistersmith.actors import Agent, command

__all__ = ["KINDS", "Job", "Tally"]


class Tally(Agent):
    """A log of operations (see the module)."""

    kind = "tally"

    @command("add")
    def add(self, op: str) -> dict[str, Any]:
        ops = self.state.setdefault("ops", [])
        ops.append(op)
        return {"n": len(ops), "op": op}

    @command("get")
    def get(self) -> dict[str, Any]:
        return {"ops": list(self.state.get("ops", []))}

    @command("fail")
    def fail(self) -> None:
        raise RuntimeError("told to fail")


class Job(Agent):
    """A task kind (see the module)."""

    kind = "job"

    @command("run")
    def run(self, x: int, work_s: float = 0.0) -> dict[str, Any]:
        time.sleep(work_s)  # the task's work, not a synchronisation
        return {"x": x}


KINDS = ("--kind", f"tally={__name__}:Tally", "--kind", f"job={__name__}:Job", "--no-entry-points")
"""The ``serve`` arguments that load these kinds (and no others)."""
