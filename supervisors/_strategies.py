"""OTP's strategies as data: which children a restart stops and starts again, and how they stop.

- ``one_for_one``: the child that exited;
- ``one_for_all``: every child;
- ``rest_for_one``: the child and those started after it;
- ``simple_one_for_one``: the child that exited; its children all start at run time from
  one template, and stop together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ._child import Child
from ._spec import STRATEGIES

__all__ = ["StrategyRule", "stop_batches", "strategy_rule"]


@dataclass(frozen=True)
class StrategyRule:
    """The decisions of one strategy."""

    targets: Callable[[Sequence[Child], Child], list[Child]]
    """``targets(children, child)``: who a restart of ``child`` takes along, in start order
    (``children`` is the supervisor's list, in start order)."""
    from_template: bool = False
    """Every child is started at run time from the template (``simple_one_for_one``): each is
    dynamic, the template counts as the one spec, and all stop together."""


def _just_the_child(children: Sequence[Child], child: Child) -> list[Child]:
    return [child]


def _all_children(children: Sequence[Child], child: Child) -> list[Child]:
    return list(children)


def _the_child_and_the_rest(children: Sequence[Child], child: Child) -> list[Child]:
    return list(children[children.index(child) :])


_RULES: Mapping[str, StrategyRule] = MappingProxyType({
    "one_for_one": StrategyRule(_just_the_child),
    "one_for_all": StrategyRule(_all_children),
    "rest_for_one": StrategyRule(_the_child_and_the_rest),
    "simple_one_for_one": StrategyRule(_just_the_child, from_template=True),
})
if tuple(_RULES) != STRATEGIES:  # one rule per strategy, in the order _spec defines them
    raise RuntimeError(f"strategy rules {tuple(_RULES)} do not match STRATEGIES {STRATEGIES}")


def strategy_rule(strategy: str) -> StrategyRule:
    """The rule of a (validated) strategy."""
    return _RULES[strategy]


def stop_batches(children: Sequence[Child], *, together: bool) -> list[list[Child]]:
    """``children`` in stopping order (reverse start order), in steps: each static child (of the
    spec) or supervisor alone, each run of agents added at run time (or every child, when
    ``together``) as one step."""
    if together:
        return [list(reversed(children))] if children else []
    batches: list[list[Child]] = []
    for child in reversed(children):
        if _together(child) and batches and _together(batches[-1][-1]):
            batches[-1].append(child)
        else:
            batches.append([child])
    return batches


def _together(child: Child) -> bool:
    return not child.static and not child.is_supervisor
