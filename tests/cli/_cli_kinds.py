"""An agent kind that ``serve --kind`` loads in the CLI tests (imported from the working directory)."""

from __future__ import annotations

from typing import Any

from mistersmith import Agent, command


class Greeter(Agent):
    kind = "greeter"

    @command("greet")
    def greet(self, name: str) -> dict[str, Any]:
        return {"greeting": f"{self.config.get('greeting', 'Hello')}, {name}!"}
