"""Benchmarks: ``python -m mistersmith.bench runtime [--json] [--quick]``.

Each suite measures MisterSmith side by side with raw pykka in the same run
and reports figures against the targets of its issue. Register a new suite
in ``SUITES`` (``name -> (Options) -> list[Figure]``).
"""

from ._cli import SUITES, Options, Progress, Suite, main, run_suites
from ._report import Figure, Target

__all__ = ["SUITES", "Figure", "Options", "Progress", "Suite", "Target", "main", "run_suites"]
