"""``bench-llm``: the agent kind the ``llm`` suite measures, sync and async handlers side by side.

One kind, so that a sync and an async handler are compared on the same agent:

- ``echo`` (``def``) and ``aecho`` (``async def``) return their payload;
- ``nap`` awaits ``asyncio.sleep(seconds)``: an LLM call that waits on the network;
- ``forever`` awaits an event that is never set, after setting ``ENTERED`` (and,
  with ``report``, reporting one progress item, so a NATS client knows it runs);
- ``tokens`` reports ``n`` progress items (``self.progress``), then returns ``n``.

Handlers run in the agent's thread (the async ones on its incarnation's loop).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mistersmith.actors import Agent, command

__all__ = ["ENTERED", "KIND", "BenchLlm"]

KIND = "bench-llm"

ENTERED = threading.Event()
"""Set by ``forever`` once it awaits; the suite clears it before each command."""


class BenchLlm(Agent):
    """The ``llm`` suite's agent (see the module's docstring)."""

    kind = KIND

    @command("echo")
    def echo(self, **payload: Any) -> dict[str, Any]:
        return payload

    @command("aecho")
    async def aecho(self, **payload: Any) -> dict[str, Any]:
        return payload

    @command("nap")
    async def nap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @command("forever")
    async def forever(self, report: bool = False) -> None:
        if report:
            self.progress("entered")
        ENTERED.set()
        await asyncio.Event().wait()

    @command("tokens")
    def tokens(self, n: int) -> int:
        progress = self.progress
        for i in range(n):
            progress(i, done=i + 1, total=n)
        return n
