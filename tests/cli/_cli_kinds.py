"""Agent kinds that ``serve --kind`` loads in the CLI tests (imported from the working directory)."""

from __future__ import annotations

from typing import Any

from mistersmith import Agent, command


class Greeter(Agent):
    kind = "greeter"

    @command("greet")
    def greet(self, name: str) -> dict[str, Any]:
        return {"greeting": f"{self.config.get('greeting', 'Hello')}, {name}!"}


class Counter(Agent):
    """A durable kind: each ``add`` commits a new version of ``self.state``."""

    kind = "counter"
    durable = True

    @command("add")
    def add(self, k: int = 1) -> int:
        self.state["n"] = int(self.state.get("n", 0)) + k
        return int(self.state["n"])
