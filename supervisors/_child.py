"""The record a supervisor keeps for each child, across its incarnations.

Only the owning supervisor's thread changes a ``Child``; any thread may read
it (attribute reads are atomic), which is how status and tree snapshots
avoid blocking on busy agents or supervisors.
"""

from __future__ import annotations

from typing import Any

from mistersmith.actors import Agent, AgentContext, AgentState, Exit

from ._spec import ChildSpec, SupervisorSpec

__all__ = ["Child"]


class Child:
    """One child: its spec, its lasting context and its current incarnation."""

    def __init__(self, spec: ChildSpec | SupervisorSpec, context: AgentContext, *, dynamic: bool) -> None:
        self.spec = spec
        self.context = context
        self.dynamic = dynamic
        self.static = False  # one of its supervisor spec's children (started in order at boot)
        self.incarnation: Agent | None = None
        self.restart_at: float | None = None  # set while a restart is pending
        self.restart_token: object | None = None  # set while a backoff timer runs
        self.backoff_attempt = 0
        self.started_at = 0.0
        self.last_exit: Exit | None = None

    @property
    def id(self) -> str:
        return self.context.agent_id

    @property
    def is_supervisor(self) -> bool:
        return isinstance(self.spec, SupervisorSpec)

    @property
    def state(self) -> AgentState:
        inc = self.incarnation
        if inc is not None:
            return inc.state
        if self.restart_at is not None:
            return AgentState.RESTARTING
        last = self.last_exit
        return AgentState.FAILED if last is not None and last.is_crash else AgentState.STOPPED

    def info(self) -> dict[str, Any]:
        """A JSON-compatible description, safe to take from any thread."""
        ctx = self.context
        info: dict[str, Any] = {
            "id": ctx.agent_id,
            "type": "supervisor" if self.is_supervisor else "agent",
            "kind": ctx.kind,
            "supervisor": ctx.supervisor,
            "state": str(self.state),
            "restart": self.spec.restart,
            "restart_count": ctx.restart_count,
        }
        if not self.is_supervisor:
            info["paused"] = ctx.paused
            info["mailbox_depth"] = ctx.mailbox.depth()
            info["config"] = dict(ctx.start_data.get("config") or {})  # as its kind shows it (secrets redacted)
        if self.restart_token is not None:
            info["restart_at"] = self.restart_at
        if self.last_exit is not None:
            info["last_exit"] = self.last_exit.describe()
        return info
