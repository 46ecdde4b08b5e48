"""The registry of agent kinds: which ``Agent`` subclass a spec's ``kind`` names."""

from __future__ import annotations

from mistersmith.actors import Agent
from mistersmith.errors import SpecError

from ._spec import ChildSpec

__all__ = ["Kinds"]


class Kinds:
    """Kind names to ``Agent`` subclasses. Registered before use; read from any thread."""

    def __init__(self) -> None:
        self.classes: dict[str, type[Agent]] = {}

    def register(self, name: str, cls: type[Agent]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise SpecError(None, "kind", cls, "register an Agent subclass")
        self.classes[name] = cls

    def resolve(self, spec: ChildSpec) -> type[Agent]:
        """The class a spec runs: its own ``kind`` class, or the one registered under its name."""
        kind = spec.kind
        if not isinstance(kind, str):
            return kind
        try:
            return self.classes[kind]
        except KeyError:
            known = ", ".join(sorted(self.classes)) or "none registered"
            raise SpecError(spec.id, "kind", kind, f"use a registered kind ({known})") from None

    def limit_setting(self, kind: str) -> str:
        """How a user raises one kind's limit (``pool_size``)."""
        cls = self.classes.get(kind)
        hint = getattr(cls, "pool_size_setting", None)
        return str(hint) if hint else f"{cls.__name__ if cls else kind}.pool_size"
