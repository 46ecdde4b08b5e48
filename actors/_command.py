"""The ``@command`` decorator and the per-class command table.

A command is a method that takes its JSON payload as keyword arguments. The
table records, for each command, the parameters it accepts and requires and
the simple types it declares, so a bad payload gets an ``invalid_payload``
error before the handler runs instead of crashing the agent, and the
handler's *shape* (``def``, ``async def``, a generator or an async generator:
``SHAPES``), which says how the incarnation runs it (``_handlers``).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar, overload

__all__ = [
    "ASYNC", "ASYNC_GENERATOR", "GENERATOR", "SHAPES", "SYNC", "CommandSpec", "builtin_command", "collect_commands",
    "command", "shape_of",
]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__mistersmith_command__"
_BUILTIN = "__mistersmith_builtin__"
COMMAND_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

SYNC, ASYNC, GENERATOR, ASYNC_GENERATOR = "sync", "async", "generator", "async_generator"
SHAPES = (SYNC, ASYNC, GENERATOR, ASYNC_GENERATOR)
"""How a handler is written: ``def``, ``async def``, ``def`` with ``yield``, ``async def`` with ``yield``."""

# JSON types a handler parameter may declare and get checked against.
_CHECKABLE: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    dict: (dict,),
    list: (list,),
}


@overload
def command(name: F) -> F: ...


@overload
def command(name: str | None = None) -> Callable[[F], F]: ...


def command(name: str | F | None = None) -> F | Callable[[F], F]:
    """Mark a method as the handler of command ``name`` (default: its own name).

    Use as ``@command("run")`` or bare ``@command``. Names are NATS subject
    tokens: letters, digits, ``_`` and ``-``. The handler may be a ``def``, an
    ``async def`` (awaited on the incarnation's own loop), or a generator of
    either kind (each yielded item is progress): see ``SHAPES``.
    """

    def mark(fn: F, cmd: str | None) -> F:
        cmd = cmd or fn.__name__
        if not COMMAND_NAME.fullmatch(cmd):
            raise ValueError(
                f"command name {cmd!r} is not allowed; use 1-64 letters, digits, '_' or '-'"
            )
        setattr(fn, _MARK, cmd)
        return fn

    if callable(name):
        return mark(name, None)
    return lambda fn: mark(fn, name)


def builtin_command(name: str) -> Callable[[F], F]:
    """Mark one of the Agent base class's own commands (status, ping...)."""

    def mark(fn: F) -> F:
        setattr(fn, _BUILTIN, True)
        return command(name)(fn)

    return mark


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What the table knows about one command."""

    name: str
    method: str
    builtin: bool
    required: frozenset[str]
    accepted: frozenset[str] | None  # None: the handler takes **kwargs
    types: Mapping[str, tuple[type, ...]]
    shape: str = SYNC
    """One of ``SHAPES``: how the incarnation runs it."""

    def describe(self) -> dict[str, Any]:
        """The parameters, for clients: ``{"params": {name: {"required", "type"}}, "more_params": bool}``."""
        names = sorted(self.required | (self.accepted or frozenset()) | set(self.types))
        params = {n: {"required": n in self.required,
                      "type": " or ".join(t.__name__ for t in self.types[n]) if n in self.types else "any"}
                  for n in names}
        return {"params": params, "more_params": self.accepted is None}

    def check(self, payload: Mapping[str, Any]) -> str | None:
        """Describe what is wrong with ``payload``, or return None if it fits."""
        if not payload:
            return f"missing {sorted(self.required)}" if self.required else None
        keys = payload.keys()
        missing = self.required - keys
        if missing:
            return f"missing {sorted(missing)}"
        if self.accepted is not None and not keys <= self.accepted:
            unexpected = sorted(keys - self.accepted)
            return f"unexpected {unexpected}; accepted: {sorted(self.accepted)}"
        for key, allowed in self.types.items():
            value = payload.get(key, _ABSENT)
            if value is _ABSENT:
                continue
            if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
                names = " or ".join(t.__name__ for t in allowed)
                return f"{key}={value!r} should be {names}"
        return None


_ABSENT = object()


def _spec_for(name: str, fn: Callable[..., Any], builtin: bool) -> CommandSpec:
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: skip type checks
        hints = {}
    required: set[str] = set()
    accepted: set[str] | None = set()
    types: dict[str, tuple[type, ...]] = {}
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            accepted = None
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise TypeError(f"command {name!r}: parameter {p.name!r} must be a keyword parameter")
        if accepted is not None:
            accepted.add(p.name)
        if p.default is p.empty:
            required.add(p.name)
        if hints.get(p.name) in _CHECKABLE:
            types[p.name] = _CHECKABLE[hints[p.name]]
    return CommandSpec(
        name=name,
        method=fn.__name__,
        builtin=builtin,
        required=frozenset(required),
        accepted=None if accepted is None else frozenset(accepted),
        types=types,
    )


def shape_of(fn: Callable[..., Any]) -> str:
    """The shape (one of ``SHAPES``) of a handler function."""
    if inspect.isasyncgenfunction(fn):
        return ASYNC_GENERATOR
    if inspect.iscoroutinefunction(fn):
        return ASYNC
    if inspect.isgeneratorfunction(fn):
        return GENERATOR
    return SYNC


def collect_commands(cls: type, builtin_names: frozenset[str]) -> dict[str, CommandSpec]:
    """Build the command table of ``cls`` from its MRO, base classes first (a shape is the method's
    as ``cls`` has it, so an override without ``@command`` keeps the name and brings its own shape)."""
    table: dict[str, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, fn in vars(klass).items():
            name = getattr(fn, _MARK, None)
            if name is None:
                continue
            builtin = getattr(fn, _BUILTIN, False)
            if name in builtin_names and not builtin:
                raise TypeError(
                    f"{cls.__name__}.{attr}: {name!r} is a built-in command; choose another name"
                )
            table[name] = _spec_for(name, fn, builtin)
    return {name: replace(spec, shape=shape_of(getattr(cls, spec.method)))
            for name, spec in table.items()}
