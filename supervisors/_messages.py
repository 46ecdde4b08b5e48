"""The messages a supervisor's mailbox takes, besides pykka's own.

Exit signals, hung handlers and backoff timers come from other threads
(children, the clock), and stay inside this package. The requests
(``StartChild``, ``TerminateChild``, ``RestartChild``) are public: the
Runtime posts them with ``Supervisor.post``, each with a reply slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from mistersmith.actors import Agent, Exit

from ._spec import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from ._child import Child

__all__ = ["ChildExit", "Hung", "Request", "RestartChild", "RestartDue", "StartChild", "TerminateChild"]


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


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start a child (an agent or a supervisor) from ``spec``; replies with its ``info()``.

    ``claimed``: the caller has claimed the agent's id across the cluster already
    (``System.claim_across``, in its own thread), so the supervisor never waits on
    PostgreSQL for it.
    """

    spec: ChildSpec | SupervisorSpec
    claimed: bool = False


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Stop a child for good, within its ``shutdown_s``, and forget it; replies with its last ``info()``."""

    child_id: str


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Stop a child and start a new incarnation now (not counted in the intensity); replies with its ``info()``.

    ``reset_state``: a durable agent's new incarnation starts from an empty state.
    """

    child_id: str
    reset_state: bool = False


@dataclass(frozen=True, slots=True)
class DropChildren:
    """Stop every child now and forget them, keeping them wanted (``stopped`` reason ``shutdown: <cause>``,
    which the registry does not read as on purpose): a node that lost its lease, or hands its agents
    over, gives them up here so that another node (or its own next run) starts them. Replies with
    the ids dropped."""

    cause: str
    ids: tuple[str, ...] | None = None
    """Only these children (None: all)."""
    retry_after_s: float | None = None
    """If set, what their mailboxes still hold is answered ``restarting`` (retry then) rather than dead-lettered."""


Request: TypeAlias = StartChild | TerminateChild | RestartChild | DropChildren
"""What ``Supervisor.post`` takes."""
