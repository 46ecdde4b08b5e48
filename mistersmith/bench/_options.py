"""What a suite is and what it is told: the one module every suite and the command line share.

A leaf of the bench package: the suites import it, and so does ``_cli``
(which imports the suites only by name, when they run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._report import Figure

__all__ = ["Options", "Progress", "Suite"]

Progress = Callable[[str], None]


def _silent(message: str) -> None:
    del message


@dataclass(frozen=True, slots=True)
class Options:
    """What every suite is told.

    ``quick``: small sizes, for smoke tests (the numbers are not figures).
    ``pin``: measure ratio figures with every thread on one CPU, where the
    platform allows it. ``progress``: called with one line per step.
    """

    quick: bool = False
    pin: bool = True
    progress: Progress = _silent


Suite = Callable[[Options], list[Figure]]
