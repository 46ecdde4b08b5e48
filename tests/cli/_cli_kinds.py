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


class Writer(Agent):
    """An LLM-like kind: ``write`` streams tokens; ``think`` reports that it started, then awaits forever
    (until it is cancelled)."""

    kind = "writer"

    @command("write")
    async def write(self, words: int) -> dict[str, Any]:
        for i in range(words):
            self.progress(f"token-{i}", done=i + 1, total=words)
        return {"words": words}

    @command("think")
    async def think(self) -> None:
        import asyncio

        self.progress("thinking")
        await asyncio.Event().wait()
