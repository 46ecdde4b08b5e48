"""Benchmarks: ``python -m mistersmith.bench runtime [--json] [--quick]``.

Each suite measures MisterSmith side by side with raw pykka in the same run
and reports figures against the targets of its issue. Register a new suite by
naming its module in ``_cli.BASELINES``; ``SUITES`` maps each name to its
``(Options) -> list[Figure]``.
"""

from ._cli import SUITES, main, run_suites
from ._options import Options, Progress, Suite
from ._report import Figure, Target

__all__ = ["SUITES", "Figure", "Options", "Progress", "Suite", "Target", "main", "run_suites"]
