"""``ProcessKind``: a named process agent kind whose program the operator chose.

A node's configuration declares them (``[process.kinds.claude]`` with
``command = ["claude", "-p"]``, and ``cwd``, ``env``, ``inherit_env``,
``timeout_s``, ``output``, ``prompt_template``, ``overridable``). Spawning
``claude`` then runs exactly that command. A spawn request may pass only the
fields the kind lists in ``overridable``, and those can never be ``command``
(the program), ``env`` or ``inherit_env`` (``PATH`` or ``LD_PRELOAD`` would
choose another program): see ``OVERRIDABLE``.

Pure data, validated eagerly; ``agent_class()`` gives the ``ProcessAgent``
subclass to register under ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from mistersmith.errors import SpecError

from .process import CONFIG_KEYS, DEFAULT_INHERITED_ENV, ProcessAgent, ProcessSettings

__all__ = ["OVERRIDABLE", "ProcessKind"]

OVERRIDABLE: tuple[str, ...] = ("cwd", "output", "prompt_template", "timeout_s")
"""The only config fields a kind may let a spawn request set."""

_FIELDS = (*CONFIG_KEYS, "overridable", "max_agents")


@dataclass(frozen=True, slots=True)
class ProcessKind:
    """One named kind: its command and the config a spawn may not change."""

    name: str
    command: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    inherit_env: tuple[str, ...] = DEFAULT_INHERITED_ENV
    timeout_s: float = 300.0
    output: str = "json"
    prompt_template: str = "{prompt}"
    overridable: tuple[str, ...] = ()
    max_agents: int = 10

    def __post_init__(self) -> None:
        where = f"process.kinds.{self.name}"
        if isinstance(self.command, str) or not isinstance(self.command, (list, tuple)):
            raise SpecError(None, f"{where}.command", self.command, "use a list of strings such as ['claude', '-p']")
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "inherit_env", tuple(self.inherit_env))
        object.__setattr__(self, "overridable", tuple(self.overridable))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        bad = sorted(set(self.overridable) - set(OVERRIDABLE))
        if bad:
            raise SpecError(None, f"{where}.overridable", bad[0],
                            f"a spawn may only override: {', '.join(OVERRIDABLE)} (never the program or its env)")
        if isinstance(self.max_agents, bool) or not isinstance(self.max_agents, int) or self.max_agents < 1:
            raise SpecError(None, f"{where}.max_agents", self.max_agents, "use an integer >= 1")
        # The checks a spawn gets, named as the operator's file says them; the program need not
        # exist yet (it is looked up at each spawn).
        ProcessSettings.parse({k: v for k, v in self.config().items() if v is not None}, prefix=f"{where}.",
                              find_program=False)

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> ProcessKind:
        """From a config file's ``[process.kinds.NAME]`` table; ``SpecError`` naming the key."""
        if not isinstance(table, Mapping):
            raise SpecError(None, f"process.kinds.{name}", table, "use a table with at least command = [...]")
        unknown = sorted(set(table) - set(_FIELDS))
        if unknown:
            raise SpecError(None, f"process.kinds.{name}.{unknown[0]}", table[unknown[0]], f"use: {', '.join(_FIELDS)}")
        if "command" not in table:
            raise SpecError(None, f"process.kinds.{name}.command", None, "give the program and its arguments")
        return cls(name=name, **dict(table))

    def config(self) -> dict[str, Any]:
        """The kind's own config, in ``ProcessAgent``'s keys."""
        return {"command": list(self.command), "cwd": self.cwd, "env": dict(self.env),
                "inherit_env": list(self.inherit_env), "timeout_s": self.timeout_s, "output": self.output,
                "prompt_template": self.prompt_template}

    def to_table(self) -> dict[str, Any]:
        """As a config file's table would say it, with ``env`` values shown as ``***``."""
        table = {k: v for k, v in self.config().items() if v is not None}
        table["env"] = {k: "***" for k in self.env}
        return {**table, "overridable": list(self.overridable), "max_agents": self.max_agents}

    def describe(self) -> dict[str, Any]:
        """What a client may know of the kind: its program and what it may override (no env values)."""
        return {"command": list(self.command), "overridable": list(self.overridable),
                "env": sorted(self.env), "timeout_s": self.timeout_s, "output": self.output,
                "max_agents": self.max_agents}

    def agent_class(self) -> type[ProcessAgent]:
        """The ``ProcessAgent`` subclass that runs this kind, to register under ``name``."""
        kind = self

        class ConfiguredProcessAgent(ProcessAgent):
            process_kind: ClassVar[ProcessKind] = kind

            @classmethod
            def effective_config(cls, config: Mapping[str, Any], child: str | None = None) -> Mapping[str, Any]:
                refused = sorted(set(config) - set(kind.overridable))
                if refused:
                    allowed = ", ".join(kind.overridable) or "nothing"
                    raise SpecError(child, f"config.{refused[0]}", config[refused[0]],
                                    f"kind {kind.name!r} runs {kind.command[0]!r} as its operator configured it; "
                                    f"a spawn may set only: {allowed} (process.kinds.{kind.name}.overridable)")
                return {**{k: v for k, v in kind.config().items() if v is not None}, **config}

        ConfiguredProcessAgent.kind = self.name
        ConfiguredProcessAgent.pool_size = self.max_agents
        ConfiguredProcessAgent.pool_size_setting = f"process.kinds.{self.name}.max_agents"
        ConfiguredProcessAgent.__name__ = ConfiguredProcessAgent.__qualname__ = f"ProcessKind[{self.name}]"
        return ConfiguredProcessAgent
