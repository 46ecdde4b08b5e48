"""``RuntimeRequests``: what a supervisor does when the Runtime asks, in the supervisor's own thread.

Start a child at run time (``StartChild``), stop one for good
(``TerminateChild``), restart one now (``RestartChild``) and drop children
from this node (``DropChildren``: a drain or a hand-over). What a request
raises goes to its caller; each stop is bounded by the child's ``shutdown_s``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mistersmith.actors import deliver
from mistersmith.errors import RestartingError, SpecError, StartError, UnknownAgentError

from . import _incarnations as incarnations
from ._child import Child
from ._messages import DropChildren
from ._spec import ChildSpec, SupervisorSpec
from ._strategies import StrategyRule, stop_batches

if TYPE_CHECKING:
    from ._supervisor import Supervisor
    from ._system import System

__all__ = ["RuntimeRequests"]


class RuntimeRequests:
    """A mixin of ``Supervisor``: its answers to the Runtime's requests."""

    if TYPE_CHECKING:
        system: System[Supervisor]
        _strategy: StrategyRule
        _children: list[Child]
        _by_id: dict[str, Child]

        def _add(self, spec: ChildSpec | SupervisorSpec, child_id: str, *, dynamic: bool,
                 claimed: bool = False) -> Child: ...
        def _start(self, child: Child) -> None: ...
        def _remove(self, child: Child) -> None: ...
        def _terminate_all(self, cause: str) -> None: ...

    def _child(self, child_id: str) -> Child:
        child = self._by_id.get(child_id)
        if child is None:
            raise UnknownAgentError(child_id)
        return child

    def _start_child(self, spec: ChildSpec | SupervisorSpec, claimed: bool = False) -> dict[str, Any]:
        if spec.id is None:
            raise StartError("?", "a child started at run time needs an id")
        child = self._add(spec, spec.id, dynamic=self._strategy.from_template, claimed=claimed)
        try:
            self._start(child)
        except BaseException:
            self._remove(child)
            raise
        return child.info()

    def _terminate_child(self, child_id: str) -> dict[str, Any]:
        child = self._child(child_id)
        incarnations.terminate(child, "stopped on request")
        self._remove(child)
        self.system.give_up(child)
        return child.info()

    def _drop_children(self, drop: DropChildren) -> list[str]:
        if drop.ids is None and drop.retry_after_s is None:
            ids = [c.id for c in self._children]
            self._terminate_all(drop.cause)
            return ids
        wanted = set(drop.ids) if drop.ids is not None else None
        children = [c for c in self._children if wanted is None or c.id in wanted]
        if drop.retry_after_s is not None:
            for child in children:  # the callers retry, and reach the agent where it runs next
                for letter in child.context.mailbox.drain():
                    deliver(letter.reply_to, error=RestartingError(child.id, drop.retry_after_s))
        for batch in stop_batches(children, together=True):
            incarnations.terminate_together(batch, drop.cause)
        for child in children:
            self._remove(child)
        return [c.id for c in children]

    def _restart_child(self, child_id: str, reset_state: bool = False) -> dict[str, Any]:
        child = self._child(child_id)
        if reset_state:
            if child.context.durable is None:
                raise SpecError(child_id, "reset_state", True, "the agent is not durable: it keeps no state to reset")
            child.context.reset_state = True
        incarnations.terminate(child, "restart requested", restarting=True)
        child.context.restart_count += 1
        self._start(child)
        return child.info()
