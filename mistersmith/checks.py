"""Value checks for settings, configs and specs: one way to refuse a bad value.

A pure leaf module (it imports only ``mistersmith.errors``). Each check
returns the value it accepted, or raises ``SpecError(child, key, value,
allowed)``, whose ``allowed`` says what would be accepted ("use an integer
from 1024 to 1073741824"); ``allowed=`` replaces that sentence where a
better one exists. Checks never convert text: parse it first
(``mistersmith.config`` does, for values from the environment and the
command line).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mistersmith.errors import SpecError

__all__ = ["choice", "count", "number", "port", "seconds", "text"]


def number(key: str, value: object, *, minimum: float = 0.0, strict: bool = True, maximum: float | None = None,
           child: str | None = None, allowed: str | None = None) -> float:
    """A finite real number above ``minimum`` (at least it, unless ``strict``) and at most ``maximum``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > minimum if strict else value >= minimum) and (maximum is None or value <= maximum):
        return float(value)
    low = f"{'>' if strict else '>='} {minimum:g}"
    raise SpecError(child, key, value, allowed or (
        f"use a finite number {low}" if maximum is None else f"use a finite number {low} and <= {maximum:g}"))


def seconds(key: str, value: object, *, zero: bool = False, child: str | None = None,
            allowed: str | None = None) -> float:
    """A finite duration in seconds: > 0 (>= 0 with ``zero``)."""
    return number(key, value, strict=not zero, child=child,
                  allowed=allowed or f"use a number of seconds {'>=' if zero else '>'} 0")


def count(key: str, value: object, *, minimum: int = 1, maximum: int | None = None, child: str | None = None,
          allowed: str | None = None) -> int:
    """An integer (not a bool) from ``minimum`` to ``maximum``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum \
            and (maximum is None or value <= maximum):
        return value
    raise SpecError(child, key, value, allowed or (
        f"use an integer >= {minimum}" if maximum is None else f"use an integer from {minimum} to {maximum}"))


def port(key: str, value: object, *, child: str | None = None) -> int:
    """A TCP port, 0 included (the system picks a free one)."""
    return count(key, value, minimum=0, maximum=65535, child=child,
                 allowed="use a port number from 0 to 65535 (0 picks a free one)")


def text(key: str, value: object, *, child: str | None = None, allowed: str = "use a non-empty string") -> str:
    """A non-empty string."""
    if isinstance(value, str) and value:
        return value
    raise SpecError(child, key, value, allowed)


def choice(key: str, value: object, options: Iterable[str], *, child: str | None = None) -> str:
    """One of ``options``."""
    options = tuple(options)
    if isinstance(value, str) and value in options:
        return value
    raise SpecError(child, key, value, f"use one of: {', '.join(options)}")
