"""Figures, targets and how they print: a table for people, JSON for machines.

A suite returns a list of ``Figure`` records. Each carries our number, the
raw-pykka baseline measured in the same run (when there is one) and the
target. A target is either relative (a bound on ``ours / baseline``) or
absolute (a bound on ``ours``). Pure code: nothing here measures anything.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

__all__ = ["Figure", "Target", "machine", "percentile", "render_json", "render_table"]

Bound = Literal["<=", ">="]


@dataclass(frozen=True, slots=True)
class Target:
    """``ours <op> value`` (absolute) or ``ours / baseline <op> value`` (relative)."""

    op: Bound
    value: float
    relative: bool

    def met(self, ours: float, baseline: float | None) -> bool | None:
        """True or False; None when a relative target has no baseline to compare with."""
        if self.relative:
            if baseline is None or baseline <= 0:
                return None
            measured = ours / baseline
        else:
            measured = ours
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def describe(self, unit: str) -> str:
        if self.relative:
            return f"{self.op} {self.value:g}x"
        return f"{self.op} {_number(self.value)} {unit}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, with its baseline and target.

    ``key`` is a stable identifier for machines (``ask_p50``); ``name`` is
    for people.

    ``extra`` holds further numbers worth keeping (p99, sample counts,
    rounds...); they go to the JSON and, for the keys in ``shown``, to the
    table's notes column.
    """

    key: str
    name: str
    unit: str
    ours: float
    baseline: float | None
    target: Target
    extra: Mapping[str, float | int | str] = field(default_factory=dict)
    shown: tuple[str, ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0:
            return None
        return self.ours / self.baseline

    @property
    def passed(self) -> bool | None:
        return self.target.met(self.ours, self.baseline)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "unit": self.unit,
            "ours": self.ours,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": {"op": self.target.op, "value": self.target.value, "relative": self.target.relative},
            "passed": self.passed,
            "extra": dict(self.extra),
        }


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, linearly interpolated."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("pass" if passed else "MISS")


def _note(key: str, value: float | int | str) -> str:
    unit = ""
    if key.endswith("_s"):
        key, unit = key[:-2], " s"
    label = key.replace("baseline_", "baseline ").replace("_", " ")
    return f"{label} {value if isinstance(value, str) else _number(float(value))}{unit}"


def render_table(figures: Sequence[Figure], baseline: str = "raw pykka") -> str:
    """A fixed-width table: figure, ours, ``baseline``, ratio, target, verdict, notes."""
    head = ("figure", "ours", baseline, "ratio", "target", "result", "notes")
    rows = [head]
    for f in figures:
        notes = ", ".join(_note(key, f.extra[key]) for key in f.shown if key in f.extra)
        rows.append((
            f.name,
            f"{_number(f.ours)} {f.unit}",
            "-" if f.baseline is None else f"{_number(f.baseline)} {f.unit}",
            "-" if f.ratio is None else f"{f.ratio:.2f}x",
            f.target.describe(f.unit),
            _verdict(f.passed),
            notes,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    try:
        pykka_version = metadata.version("pykka")
    except metadata.PackageNotFoundError:  # pragma: no cover - pykka is a dependency
        pykka_version = "unknown"
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        load = []
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "pykka": pykka_version,
        "platform": platform.platform(),
        "loadavg": load,
    }


def render_json(
    suite: str, quick: bool, results: Sequence[tuple[str, Sequence[Figure]]], machine_info: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON document ``--json`` prints: every figure, tagged with its suite."""
    return {
        "suite": suite,
        "quick": quick,
        "machine": dict(machine_info),
        "figures": [{"suite": name, **f.as_dict()} for name, figures in results for f in figures],
    }
