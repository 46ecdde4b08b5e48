"""``BuiltinCommands``: what every agent answers besides its own commands.

``status`` (its ``describe()``), ``ping`` (through the mailbox: is it
responsive?), ``pause`` and ``resume`` (a paused agent refuses work commands;
the pause survives a restart). They run in the incarnation's thread, like any
command; ``describe()`` is safe from any thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ._command import CommandSpec, builtin_command
from ._context import AgentContext
from ._state import BUILTIN_COMMANDS, AgentState

__all__ = ["BuiltinCommands"]


class BuiltinCommands:
    """A mixin of ``Agent``: the built-in commands, over the incarnation's state."""

    if TYPE_CHECKING:
        context: AgentContext
        agent_id: str
        lifecycle: AgentState
        _busy_command: str | None
        _commands: ClassVar[dict[str, CommandSpec]]

    def describe(self) -> dict[str, Any]:
        """A JSON-compatible status of this incarnation (safe from any thread)."""
        ctx = self.context
        state = self.lifecycle
        if state is AgentState.BUSY and self._busy_command in BUILTIN_COMMANDS:
            state = AgentState.PAUSED if ctx.paused else AgentState.IDLE
        return {
            "agent_id": ctx.agent_id,
            "kind": ctx.kind,
            "supervisor": ctx.supervisor,
            "state": str(state),
            "paused": ctx.paused,
            "restart_count": ctx.restart_count,
            "mailbox_depth": ctx.mailbox.depth(),
            "commands": sorted(self._commands),
            "breakers": ctx.breakers.info(),
        }

    @builtin_command("status")
    def _status(self) -> dict[str, Any]:
        return self.describe()

    @builtin_command("ping")
    def _ping(self) -> dict[str, Any]:
        return {"pong": True, "agent_id": self.agent_id}

    @builtin_command("pause")
    def _pause(self) -> dict[str, Any]:
        if not self.context.paused:
            self.context.paused = True
            self.context.emit("paused", None, {})
        return self.describe()

    @builtin_command("resume")
    def _resume(self) -> dict[str, Any]:
        if self.context.paused:
            self.context.paused = False
            self.context.emit("resumed", None, {})
        return self.describe()
