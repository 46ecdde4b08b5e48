"""User agent kinds for ``serve``: ``--kind module:Class`` and the ``mistersmith.agents`` entry points.

``--kind pkg.mod:Greeter`` registers ``Greeter`` under its ``kind`` class
attribute (else its class name); ``--kind greeter=pkg.mod:Greeter`` names it.
An installed package offers kinds with an entry point::

    [project.entry-points."mistersmith.agents"]
    greeter = "pkg.mod:Greeter"

Modules are imported with the current directory on ``sys.path``, as ``python
-m`` would. Anything wrong is a usage error (exit code 2) naming the spec.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from mistersmith.actors import Agent
from mistersmith.ids import ID_RULE, is_id

from ._errors import usage

__all__ = ["ENTRY_POINT_GROUP", "load_kinds"]

ENTRY_POINT_GROUP = "mistersmith.agents"


def _check(obj: object, name: str | None, where: str) -> tuple[str, type[Agent]]:
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise usage(f"{where}: {obj!r} is not an Agent subclass (from mistersmith import Agent)")
    kind = name or obj.kind or obj.__name__
    if not is_id(kind):
        raise usage(f"{where}: kind name {kind!r} is not allowed; {ID_RULE}")
    return kind, obj


def _import(spec: str) -> tuple[str | None, object]:
    name, sep, target = spec.partition("=")
    if not sep:
        name, target = "", spec
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise usage(f"--kind {spec!r}: use module:Class or name=module:Class")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        raise usage(f"--kind {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise usage(f"--kind {spec!r}: {module_name!r} has no {attr!r}") from None
    return name or None, obj


def load_kinds(specs: Sequence[str], *, use_entry_points: bool = True) -> dict[str, type[Agent]]:
    """Entry-point kinds first, then ``--kind`` ones (which win on a name clash)."""
    kinds: dict[str, type[Agent]] = {}
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point {ENTRY_POINT_GROUP}:{ep.name} ({ep.value})"
            try:
                obj = ep.load()
            except Exception as exc:
                raise usage(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
            kind, cls = _check(obj, ep.name, where)
            kinds[kind] = cls
    for spec in specs:
        name, obj = _import(spec)
        kind, cls = _check(obj, name, f"--kind {spec!r}")
        kinds[kind] = cls
    return kinds
