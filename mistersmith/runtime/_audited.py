"""The audit trail's funnel: every door's spawn, stop, restart (and state reset) and command send passes here.

``Audited`` wraps the Runtime's control calls and the one queueing step every
command takes (``_enqueue``: ``send``, ``ask``, ``aask``, ``ask_future``,
``ask_stream``, ``astream``) and cancels, and hands an ``AuditEntry`` to ``audit`` (the
node's ``AuditLog``; None: nothing is recorded). Who acts is the
``mistersmith.audit`` context the door set (``library`` when none did).

Recording costs the caller one non-blocking ``record`` (the log writes and
ships it from its own thread), so no action waits for it. A command's
outcome is whether it was accepted (queued for the agent) or refused (its
code); what the handler then did is the journal's to say. Spawn, stop and
restart record their outcome once they are done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mistersmith.actors import Agent, Letter
from mistersmith import tracing
from mistersmith.audit import AuditEntry, AuditRecorder, current_actor, outcome_of
from mistersmith.supervisors import Backoff, Restart

from ._commands import Commands
from ._control import Control

__all__ = ["Audited"]


class Audited(Commands, Control):
    """The Runtime's calls, each recorded in ``audit``."""

    audit: AuditRecorder | None = None
    """Where actions are recorded (a node sets its ``AuditLog``); None: nowhere."""

    def _audit(self, action: str, target: str, exc: BaseException | None, detail: str | None = None,
               outcome: str | None = None) -> None:
        audit = self.audit
        actor = current_actor()
        if audit is None or actor is None:
            return
        audit.record(AuditEntry(self.node_id, actor.name, actor.door, action, target,
                                outcome if outcome is not None else outcome_of(exc), detail,
                                actor.trace_id or tracing.current_trace_id()))

    # -- commands -----------------------------------------------------------------------

    def _enqueue(self, agent_id: str, command: str, payload: Any, reply: Any, timeout_s: float | None = None,
                 correlation_id: str | None = None) -> Letter:
        audit = self.audit
        if audit is None or not audit.record_commands:
            return super()._enqueue(agent_id, command, payload, reply, timeout_s, correlation_id)
        try:
            letter = super()._enqueue(agent_id, command, payload, reply, timeout_s, correlation_id)
        except BaseException as exc:
            self._audit("command", agent_id, exc, command)
            raise
        self._audit("command", agent_id, None, command)
        return letter

    # -- control ------------------------------------------------------------------------

    def spawn(self, kind: str | type[Agent] | None, agent_id: str | None = None,
              config: Mapping[str, Any] | None = None, restart: Restart | None = None, supervisor: str = "root",
              *, backoff: Backoff | None = None, **options: Any) -> str:
        try:
            new_id = super().spawn(kind, agent_id, config, restart, supervisor, backoff=backoff, **options)
        except BaseException as exc:
            self._audit("spawn", agent_id or "", exc, _kind_name(kind))
            raise
        self._audit("spawn", new_id, None, _kind_name(kind))
        return new_id

    async def aspawn(self, kind: str | type[Agent] | None, agent_id: str | None = None,
                     config: Mapping[str, Any] | None = None, restart: Restart | None = None,
                     supervisor: str = "root", *, backoff: Backoff | None = None, **options: Any) -> str:
        try:
            new_id = await super().aspawn(kind, agent_id, config, restart, supervisor, backoff=backoff, **options)
        except BaseException as exc:
            self._audit("spawn", agent_id or "", exc, _kind_name(kind))
            raise
        self._audit("spawn", new_id, None, _kind_name(kind))
        return new_id

    def stop(self, agent_id: str) -> None:
        try:
            super().stop(agent_id)
        except BaseException as exc:
            self._audit("stop", agent_id, exc)
            raise
        self._audit("stop", agent_id, None)

    async def astop(self, agent_id: str) -> None:
        try:
            await super().astop(agent_id)
        except BaseException as exc:
            self._audit("stop", agent_id, exc)
            raise
        self._audit("stop", agent_id, None)

    def restart(self, agent_id: str, *, reset_state: bool = False) -> None:
        action = "state_reset" if reset_state else "restart"
        try:
            super().restart(agent_id, reset_state=reset_state)
        except BaseException as exc:
            self._audit(action, agent_id, exc)
            raise
        self._audit(action, agent_id, None)

    async def arestart(self, agent_id: str, *, reset_state: bool = False) -> None:
        action = "state_reset" if reset_state else "restart"
        try:
            await super().arestart(agent_id, reset_state=reset_state)
        except BaseException as exc:
            self._audit(action, agent_id, exc)
            raise
        self._audit(action, agent_id, None)

    def cancel(self, agent_id: str, correlation_id: str) -> bool:
        try:
            cancelled = super().cancel(agent_id, correlation_id)
        except BaseException as exc:
            self._audit("cancel", agent_id, exc, correlation_id)
            raise
        self._audit("cancel", agent_id, None, correlation_id, None if cancelled else "not_running")
        return cancelled

    async def acancel(self, agent_id: str, correlation_id: str) -> bool:
        return self.cancel(agent_id, correlation_id)

    def record_action(self, action: str, target: str, error: BaseException | None = None,
                      detail: str | None = None, *, outcome: str | None = None) -> None:
        """Record an action done outside these calls (drain, rebalance, shutdown, state reset, a refused
        call) for whoever acts now (the door's ``mistersmith.audit.acting``); ``error``: how it failed,
        or ``outcome``: what to record instead (``forbidden``)."""
        self._audit(action, target, error, detail, outcome)


def _kind_name(kind: str | type[Agent] | None) -> str | None:
    if kind is None or isinstance(kind, str):
        return kind
    return kind.kind or kind.__name__

