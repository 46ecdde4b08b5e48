"""OTP's restart types as data: what each decides when a child's incarnation ends.

- ``permanent``: always restarted;
- ``transient``: restarted after a crash only (a ``normal`` or ``shutdown`` exit ends it);
- ``temporary``: never restarted, not even with its siblings, and removed once it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mistersmith.actors import Exit

from ._spec import RESTARTS

__all__ = ["RestartRule", "restart_rule"]


@dataclass(frozen=True)
class RestartRule:
    """The decisions of one restart type."""

    should_restart: Callable[[Exit], bool]
    """The child's own incarnation ended with this exit: start a new one?"""
    removed: bool
    """Not restarted, the child is removed (forgotten) instead of kept, stopped, in its supervisor's
    list; and a sibling's restart removes it instead of restarting it. (A child started from a
    ``simple_one_for_one`` template is removed when not restarted, whatever its type.)"""


def _always(exit_: Exit) -> bool:
    return True


def _after_a_crash(exit_: Exit) -> bool:
    return exit_.is_crash


def _never(exit_: Exit) -> bool:
    return False


_RULES: Mapping[str, RestartRule] = MappingProxyType({
    "permanent": RestartRule(_always, removed=False),
    "transient": RestartRule(_after_a_crash, removed=False),
    "temporary": RestartRule(_never, removed=True),
})
if tuple(_RULES) != RESTARTS:  # one rule per restart type, in the order _spec defines them
    raise RuntimeError(f"restart rules {tuple(_RULES)} do not match RESTARTS {RESTARTS}")


def restart_rule(restart: str) -> RestartRule:
    """The rule of a (validated) restart type."""
    return _RULES[restart]
