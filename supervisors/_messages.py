"""The messages a supervisor's mailbox takes, besides pykka's own.

Exit signals and backoff timers come from other threads (children, the
clock); the requests come from the Runtime, each with a reply slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mistersmith.actors import Agent, Exit

if TYPE_CHECKING:
    from ._child import Child
    from ._spec import ChildSpec, SupervisorSpec

__all__ = ["ChildExit", "Hung", "RestartChild", "RestartDue", "StartChild", "TerminateChild"]


class ChildExit:
    """An incarnation's exit signal (sent once per incarnation)."""

    __slots__ = ("exit", "incarnation")

    def __init__(self, incarnation: Agent, exit_: Exit) -> None:
        self.incarnation = incarnation
        self.exit = exit_


class Hung:
    """The watchdog saw this incarnation's handler run past its ``command_timeout_s``.

    The supervisor, not the clock thread, abandons it and emits ``failed``:
    a timer callback never waits on the journal."""

    __slots__ = ("incarnation",)

    def __init__(self, incarnation: Agent) -> None:
        self.incarnation = incarnation


class RestartDue:
    """Restart these children now: a backoff ran out, or a restart is retried."""

    __slots__ = ("children", "counted", "token")

    def __init__(self, children: tuple[Child, ...], token: object | None, counted: bool) -> None:
        self.children = children
        self.token = token
        self.counted = counted


class StartChild:
    __slots__ = ("spec",)

    def __init__(self, spec: ChildSpec | SupervisorSpec) -> None:
        self.spec = spec


class TerminateChild:
    __slots__ = ("child_id",)

    def __init__(self, child_id: str) -> None:
        self.child_id = child_id


class RestartChild:
    __slots__ = ("child_id",)

    def __init__(self, child_id: str) -> None:
        self.child_id = child_id
