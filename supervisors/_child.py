"""The record a supervisor keeps for each child, across its incarnations.

Only the owning supervisor's thread changes a ``Child``; any thread may read
it (attribute reads are atomic), which is how status and tree snapshots
avoid blocking on busy agents or supervisors.
"""

from __future__ import annotations

import enum
from typing import Any

from mistersmith.actors import Agent, AgentContext, AgentState, Exit

from ._spec import ChildSpec, SupervisorSpec

__all__ = ["Child", "ChildStatus"]


class ChildStatus(enum.Enum):
    """Where a child is, as its supervisor sees it (only the supervisor's thread changes it)."""

    RUNNING = "running"
    """An incarnation is starting or up (its own ``state`` says idle, busy, paused...)."""
    RESTARTING = "restarting"
    """A restart is due now: the supervisor is starting it, or tries again after a failed start."""
    BACKING_OFF = "backing_off"
    """A restart waits for its backoff timer (``restart_at``: when); commands are stashed meanwhile."""
    STOPPED = "stopped"
    """Not running, and no restart pending: stopped, or ended normally and not restarted."""
    FAILED = "failed"
    """Not running after a crash, and not restarted."""


_SHOWN = {  # the state a child with no incarnation shows
    ChildStatus.RESTARTING: AgentState.RESTARTING,
    ChildStatus.BACKING_OFF: AgentState.RESTARTING,
    ChildStatus.STOPPED: AgentState.STOPPED,
    ChildStatus.FAILED: AgentState.FAILED,
}


class Child:
    """One child: its spec, its lasting context and its current incarnation."""

    def __init__(self, spec: ChildSpec | SupervisorSpec, context: AgentContext, *, dynamic: bool) -> None:
        self.spec = spec
        self.context = context
        self.dynamic = dynamic
        self.static = False  # one of its supervisor spec's children (started in order at boot)
        self.incarnation: Agent | None = None
        self.status = ChildStatus.STOPPED
        self.restart_at: float | None = None  # BACKING_OFF: when the restart is due
        self.restart_token: object | None = None  # BACKING_OFF: the timer that is to restart it
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
        """Its incarnation's state, or (between incarnations) what its ``status`` shows."""
        inc = self.incarnation
        if inc is not None:
            return inc.lifecycle
        return _SHOWN.get(self.status, AgentState.STOPPED)

    def back_off(self, restart_at: float, token: object) -> None:
        """Wait for the backoff timer ``token`` (due at ``restart_at``) before the next incarnation."""
        self.restart_at = restart_at
        self.restart_token = token
        self.status = ChildStatus.BACKING_OFF

    def settle(self, status: ChildStatus) -> None:
        """Any status but ``BACKING_OFF``: no timer of ours is to restart it any more."""
        self.status = status
        self.restart_token = None
        self.restart_at = None

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
            info["breakers"] = ctx.breakers.info()  # by name: state, failures, retry_after_s...
        if self.status is ChildStatus.BACKING_OFF:
            info["restart_at"] = self.restart_at
        if self.last_exit is not None:
            info["last_exit"] = self.last_exit.describe()
        return info
