"""``echo``: the built-in agent kind for smoke tests, examples and benchmarks."""

from __future__ import annotations

from typing import Any

from ._agent import Agent
from ._command import command

__all__ = ["EchoAgent"]


class EchoAgent(Agent):
    """Answers ``echo`` with its payload, crashes on ``fail``, blocks on ``hang``."""

    kind = "echo"

    @command("echo")
    def echo(self, **payload: Any) -> dict[str, Any]:
        """Return the payload unchanged."""
        return payload

    @command("fail")
    def fail(self, message: str = "echo was told to fail") -> None:
        """Crash this incarnation (its supervisor decides what happens next)."""
        raise RuntimeError(message)

    @command("hang")
    def hang(self, seconds: float = 3600.0) -> dict[str, Any]:
        """Block for ``seconds`` (past any sane ``command_timeout_s``).

        It gives up early when the incarnation is abandoned or stopped, so a
        test that hangs an agent does not leak its thread for an hour.
        """
        woken = self.cancelled.wait(seconds)
        return {"hung_s": seconds, "cancelled": woken}
