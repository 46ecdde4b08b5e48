"""Supervision policy as data: frozen, eagerly validated specs.

Every default of the supervision layer is stated once, here. A bad value is
refused when the spec is built, with a ``SpecError`` that names the child, the
key, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Union, get_args

import orjson

from mistersmith import checks
from mistersmith.actors import STATE_ON_RESTART, Agent
from mistersmith.errors import SpecError
from mistersmith.ids import check_id  # ids are NATS subject tokens: the one rule

__all__ = [
    "DEFAULTS",
    "RESTARTS",
    "STRATEGIES",
    "Backoff",
    "ChildSpec",
    "Restart",
    "Strategy",
    "SupervisorSpec",
    "check_id",
    "tolerant_root",
]

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
RESTARTS: tuple[str, ...] = get_args(Restart)
"""Every restart type, in OTP's order; the one list the edges (NATS, MCP, CLI) offer too."""
STRATEGIES: tuple[str, ...] = get_args(Strategy)
"""Every strategy, in OTP's order."""


@dataclass(frozen=True)
class _Defaults:
    """The supervision defaults, in one place (OTP's where OTP has one)."""

    intensity: int = 1  # OTP: at most 1 restart ...
    period_s: float = 5.0  # ... in 5 seconds
    # The root a Runtime (library or node) gets unless told otherwise: it
    # tolerates many restarts, and its agents back off (Akka) instead, so one
    # crash-looping agent cannot stop the program. OTP's exact 1-in-5 root is
    # SupervisorSpec("root").
    root_intensity: int = 1000
    root_period_s: float = 60.0
    restart: Restart = "permanent"
    agent_shutdown_s: float = 5.0  # OTP's worker default
    supervisor_shutdown_s: float = 60.0  # OTP says infinity; ours is bounded
    command_timeout_s: float | None = 30.0
    mailbox_size: int = 10_000
    # Commands arriving during a backoff wait for the next incarnation, up to this many and
    # only when the restart comes before the caller's deadline; past that: `restarting`.
    # The same for every door (in-process, NATS, MCP). 0 refuses them all at once.
    stash_limit: int = 100
    start_timeout_s: float = 10.0
    # Durable agents: what a restart starts from, how many versions are kept, how large a state
    # may be, how long a commit waits for the store, and how long effect records are kept.
    state_on_restart: str = "keep"
    state_history: int = 1
    state_max_bytes: int = 1 << 20
    state_timeout_s: float = 5.0
    effect_retention_s: float = 7 * 24 * 3600.0
    backoff_min_s: float = 0.1
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.2


DEFAULTS = _Defaults()

def _number(child: str | None, key: str, value: object, *, minimum: float, strict: bool) -> None:
    checks.number(key, value, minimum=minimum, strict=strict, child=child)


def _count(child: str | None, key: str, value: object, minimum: int) -> None:
    checks.count(key, value, minimum=minimum, child=child)


def _choice(child: str | None, key: str, value: object, allowed: tuple[str, ...]) -> None:
    checks.choice(key, value, allowed, child=child)


@dataclass(frozen=True)
class Backoff:
    """Akka-style exponential restart backoff.

    The n-th consecutive restart waits ``min(max_s, min_s * factor**n)`` plus
    up to ``jitter`` of that again, at random. A child that ran for
    ``reset_after_s`` (default: ``max_s``) without failing starts over at ``min_s``.
    """

    min_s: float = DEFAULTS.backoff_min_s
    max_s: float = DEFAULTS.backoff_max_s
    factor: float = DEFAULTS.backoff_factor
    jitter: float = DEFAULTS.backoff_jitter
    reset_after_s: float | None = None

    def __post_init__(self) -> None:
        _number(None, "backoff.min_s", self.min_s, minimum=0.0, strict=False)
        _number(None, "backoff.max_s", self.max_s, minimum=0.0, strict=False)
        if self.max_s < self.min_s:
            raise SpecError(None, "backoff.max_s", self.max_s, f"use a value >= min_s ({self.min_s})")
        _number(None, "backoff.factor", self.factor, minimum=1.0, strict=False)
        _number(None, "backoff.jitter", self.jitter, minimum=0.0, strict=False)
        if self.reset_after_s is not None:
            _number(None, "backoff.reset_after_s", self.reset_after_s, minimum=0.0, strict=True)

    @property
    def stable_after_s(self) -> float:
        return self.max_s if self.reset_after_s is None else self.reset_after_s

    def delay_s(self, attempt: int, rand: float) -> float:
        """The wait before restart number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        try:
            base = min(self.max_s, self.min_s * self.factor**attempt)
        except OverflowError:
            base = self.max_s
        return base * (1.0 + self.jitter * rand)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised agent: what to run and how to treat its exits.

    ``kind`` is a registered kind name or an ``Agent`` subclass. ``config``
    must be JSON-compatible (it is journaled, and sent over NATS).

    ``command_timeout_s`` is the hard cap on one command (past it the agent
    fails and restarts); ``idle_timeout_s`` (None: the kind's) fails a command
    with ``timeout`` once it has reported no progress for that long.

    ``durable`` (None: the kind's ``durable`` attribute) keeps the agent's
    ``self.state`` in the runtime's state store; ``state_on_restart`` is
    ``keep`` (start from the last commit) or ``reset`` (OTP's fresh start,
    the committed state cleared); ``state_history`` versions are kept;
    ``state_max_bytes`` caps a commit (``state_too_large``); a commit waits at
    most ``state_timeout_s`` for the store (``unavailable``); effect records
    older than ``effect_retention_s`` are forgotten at the next activation.
    """

    id: str | None
    kind: str | type[Agent]
    config: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = DEFAULTS.restart
    shutdown_s: float = DEFAULTS.agent_shutdown_s
    backoff: Backoff | None = None
    command_timeout_s: float | None = DEFAULTS.command_timeout_s
    idle_timeout_s: float | None = None
    mailbox_size: int = DEFAULTS.mailbox_size
    stash_limit: int = DEFAULTS.stash_limit
    start_timeout_s: float = DEFAULTS.start_timeout_s
    durable: bool | None = None
    state_on_restart: str = DEFAULTS.state_on_restart
    state_history: int = DEFAULTS.state_history
    state_max_bytes: int = DEFAULTS.state_max_bytes
    state_timeout_s: float = DEFAULTS.state_timeout_s
    effect_retention_s: float = DEFAULTS.effect_retention_s

    def __post_init__(self) -> None:
        child = self.id if isinstance(self.id, str) else None
        if self.id is not None:
            check_id(self.id, "id", child)
        kind = self.kind
        if isinstance(kind, str):
            check_id(kind, "kind", child)
        elif not (isinstance(kind, type) and issubclass(kind, Agent)):
            raise SpecError(child, "kind", kind, "use a registered kind name or an Agent subclass")
        if not isinstance(self.config, Mapping):
            raise SpecError(child, "config", self.config, "use a JSON object (a dict)")
        try:
            orjson.dumps(dict(self.config))
        except TypeError as exc:
            raise SpecError(child, "config", self.config, f"use JSON-compatible values ({exc})") from None
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))
        _choice(child, "restart", self.restart, RESTARTS)
        _number(child, "shutdown_s", self.shutdown_s, minimum=0.0, strict=False)
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise SpecError(child, "backoff", self.backoff, "use a Backoff(...) or None")
        if self.command_timeout_s is not None:
            _number(child, "command_timeout_s", self.command_timeout_s, minimum=0.0, strict=True)
        if self.idle_timeout_s is not None:
            _number(child, "idle_timeout_s", self.idle_timeout_s, minimum=0.0, strict=True)
        _count(child, "mailbox_size", self.mailbox_size, 1)
        _count(child, "stash_limit", self.stash_limit, 0)
        _number(child, "start_timeout_s", self.start_timeout_s, minimum=0.0, strict=True)
        if self.durable is not None and not isinstance(self.durable, bool):
            raise SpecError(child, "durable", self.durable, "use true, false or leave it unset (the kind decides)")
        _choice(child, "state_on_restart", self.state_on_restart, STATE_ON_RESTART)
        _count(child, "state_history", self.state_history, 1)
        _count(child, "state_max_bytes", self.state_max_bytes, 2)
        _number(child, "state_timeout_s", self.state_timeout_s, minimum=0.0, strict=True)
        _number(child, "effect_retention_s", self.effect_retention_s, minimum=0.0, strict=False)

    @property
    def kind_name(self) -> str:
        kind = self.kind
        return kind if isinstance(kind, str) else (kind.kind or kind.__name__)


@dataclass(frozen=True)
class SupervisorSpec:
    """A supervisor: strategy, restart intensity, and its children in start order.

    ``simple_one_for_one`` supervisors have no static children; every child is
    started at run time from ``template``. ``backoff`` applies to children
    that have none of their own. ``restart`` and ``shutdown_s`` apply to this
    supervisor as a child of its parent.
    """

    id: str
    strategy: Strategy = "one_for_one"
    intensity: int = DEFAULTS.intensity
    period_s: float = DEFAULTS.period_s
    children: tuple[Union[ChildSpec, "SupervisorSpec"], ...] = ()
    restart: Restart = DEFAULTS.restart
    shutdown_s: float = DEFAULTS.supervisor_shutdown_s
    backoff: Backoff | None = None
    template: ChildSpec | None = None
    start_timeout_s: float = DEFAULTS.start_timeout_s

    def __post_init__(self) -> None:
        sup = check_id(self.id, "id", None)
        _choice(sup, "strategy", self.strategy, STRATEGIES)
        _count(sup, "intensity", self.intensity, 0)
        _number(sup, "period_s", self.period_s, minimum=0.0, strict=True)
        _choice(sup, "restart", self.restart, RESTARTS)
        _number(sup, "shutdown_s", self.shutdown_s, minimum=0.0, strict=False)
        _number(sup, "start_timeout_s", self.start_timeout_s, minimum=0.0, strict=True)
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise SpecError(sup, "backoff", self.backoff, "use a Backoff(...) or None")
        children = tuple(self.children)
        object.__setattr__(self, "children", children)
        seen: set[str] = set()
        for spec in children:
            if not isinstance(spec, (ChildSpec, SupervisorSpec)):
                raise SpecError(sup, "children", spec, "use ChildSpec or SupervisorSpec items")
            if spec.id is None:
                raise SpecError(sup, "children", spec, "give every static child an id")
            if spec.id in seen:
                raise SpecError(spec.id, "id", spec.id, f"ids must be unique under supervisor {sup!r}")
            seen.add(spec.id)
        if self.strategy == "simple_one_for_one":
            if children:
                raise SpecError(sup, "children", children, "simple_one_for_one starts children only at run time; use template")
            if not isinstance(self.template, ChildSpec):
                raise SpecError(sup, "template", self.template, "simple_one_for_one needs a ChildSpec template")
        elif self.template is not None:
            raise SpecError(sup, "template", self.template, "a template is for simple_one_for_one only")


def tolerant_root(
    *,
    intensity: int = DEFAULTS.root_intensity,
    period_s: float = DEFAULTS.root_period_s,
    backoff_max_s: float = DEFAULTS.backoff_max_s,
) -> SupervisorSpec:
    """The default root: ``one_for_one``, ``intensity`` restarts per ``period_s``, and restart
    backoff for its agents (from ``DEFAULTS.backoff_min_s`` up to ``backoff_max_s``)."""
    return SupervisorSpec("root", intensity=intensity, period_s=period_s,
                          backoff=Backoff(max_s=max(backoff_max_s, DEFAULTS.backoff_min_s)))
