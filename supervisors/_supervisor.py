"""The supervisor: an actor that starts, watches and restarts its children.

It follows Erlang/OTP's ``supervisor``:

- children start in list order, each ``start`` returning once ``on_start`` is
  done; if one fails, those already started stop in reverse order and the
  start fails with ``StartError``;
- on a child's exit its restart type decides (``_restarts``: permanent always,
  transient after a crash only, temporary never), and the strategy picks who
  restarts with it (``_strategies``: ``one_for_one``, ``one_for_all``,
  ``rest_for_one``, ``simple_one_for_one``);
- more than ``intensity`` restarts within ``period_s`` make it stop every child
  in reverse start order and exit with reason ``shutdown``, which escalates the
  failure to its parent;
- stopping a child waits at most its ``shutdown_s``; a child still running
  then is reported (``shutdown_timeout``) and abandoned;
- a durable child whose write was refused because a newer activation owns it
  (exit ``fenced``) is never restarted here, whatever its restart type: it is
  stopped (reason ``fenced: ...``) and removed, as it runs elsewhere now.

Plus Akka-style backoff: with a ``Backoff``, restarts wait an exponentially
growing delay (``restart_scheduled``), and the child's mailbox meanwhile
stashes commands up to ``stash_limit`` or refuses them with ``restarting``.

Threads: every method below runs in the supervisor's own thread, except
``start_root`` (the caller's), ``post`` and the read-only views
(``children``, ``snapshot``, ``count_children``), which any thread may call,
and the two signals from other threads (``report_hung``, ``_exit_signal``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from mistersmith import tracing
from mistersmith.actors import Agent, AgentContext, Exit, Letter, ReplySlot, deliver
from mistersmith.errors import AgentExistsError, RestartingError, StartError

from . import _incarnations as incarnations
from ._child import Child, ChildStatus
from ._intensity import IntensityWindow
from ._messages import ChildExit, DropChildren, Hung, Request, RestartChild, RestartDue, StartChild, TerminateChild
from ._requests import RuntimeRequests
from ._restarts import restart_rule
from ._spec import ChildSpec, SupervisorSpec
from ._strategies import stop_batches, strategy_rule
from ._system import System

__all__ = ["Supervisor"]

logger = logging.getLogger("mistersmith.supervisor")


class Supervisor(RuntimeRequests, Agent):
    """A supervision-tree node. Built from a ``SupervisorSpec`` by its parent (or ``start_root``)."""

    kind = "supervisor"

    def __init__(self, context: AgentContext, spec: SupervisorSpec, system: System[Supervisor]) -> None:
        super().__init__(context)
        self.spec = spec
        self.system = system
        self.path = f"{context.supervisor}/{spec.id}" if context.supervisor else spec.id
        self._strategy = strategy_rule(spec.strategy)
        self._children: list[Child] = []
        self._by_id: dict[str, Child] = {}
        self._window = IntensityWindow(spec.intensity, spec.period_s)
        self._rand = random.Random()

    @classmethod
    def start_root(
        cls, system: System[Supervisor], spec: SupervisorSpec, on_exit: Callable[[Agent, Exit], None]
    ) -> Supervisor:
        """Start the root of a tree (and its static children); return it once its ``on_start`` is done.

        Runs in the caller's thread, and waits as long as the root's start takes.
        ``on_exit`` gets the root's exit signal, in the root's thread, as its very
        last act. Raises ``StartError`` if a static child fails to start (the ones
        started before it are stopped by then).
        """
        root = cls(system.make_context(spec, spec.id, "", on_exit), spec, system)
        root.start_thread()
        root.started.wait()
        if root.start_error is not None:
            raise StartError(spec.id, f"{root.start_error}") from root.start_error
        return root

    # -- any thread -------------------------------------------------------------

    def post(self, request: Request, reply: ReplySlot) -> None:
        """Queue a request (``StartChild``, ``TerminateChild``, ``RestartChild``); any thread, never blocks.

        Its outcome goes to ``reply``. A supervisor that stopped meanwhile refuses it
        (``UnknownAgentError``, or ``RuntimeClosedError`` as the tree goes down).
        """
        self.mailbox.put(Letter(request, reply))
        if self.mailbox.closed:
            self.system.dead_letters(self.path, self.mailbox.drain())

    def report_hung(self, incarnation: Agent) -> None:
        """Runs in the watchdog's (the clock's) thread: queue it for ours, which abandons the handler."""
        self.mailbox.put(Letter(Hung(incarnation)))

    def _exit_signal(self, incarnation: Agent, exit_: Exit) -> None:
        """Runs in the child's thread (or the watchdog's): queue it for ours."""
        self.mailbox.put(Letter(ChildExit(incarnation, exit_)))

    def children(self) -> tuple[Child, ...]:
        return tuple(self._children)

    def count_children(self) -> dict[str, int]:
        """OTP's ``count_children``: specs, active, supervisors, workers."""
        children = self.children()
        return {
            # OTP counts simple_one_for_one's single template as its one spec
            "specs": 1 if self._strategy.from_template else len(children),
            "active": sum(1 for c in children if c.incarnation is not None),
            "supervisors": sum(1 for c in children if c.is_supervisor),
            "workers": sum(1 for c in children if not c.is_supervisor),
        }

    def snapshot(self) -> dict[str, Any]:
        """This subtree as a JSON-compatible dict; never blocks."""
        spec = self.spec
        out: list[dict[str, Any]] = []
        for child in self.children():
            inc = child.incarnation
            if isinstance(inc, Supervisor):
                node = inc.snapshot()
                node.update(restart=child.spec.restart, restart_count=child.context.restart_count)
                out.append(node)
            else:
                out.append(child.info())
        return {
            "id": spec.id, "path": self.path, "type": "supervisor", "kind": "supervisor", "state": str(self.lifecycle),
            "strategy": spec.strategy, "intensity": spec.intensity, "period_s": spec.period_s, "children": out,
        }

    # -- lifecycle ------------------------------------------------------------

    def on_start(self) -> None:
        """Register the path, then start the static children in order (rollback on failure).

        Runs in the supervisor's own thread. If a child fails to start, the
        ones already started stop in reverse order and the ``StartError``
        propagates: this supervisor's own start fails.
        """
        if self.system.supervisors.setdefault(self.path, self) is not self:
            raise AgentExistsError(self.path)
        started: list[Child] = []
        try:
            for spec in self.spec.children:
                child = self._add(spec, spec.id or "", dynamic=False)
                child.static = True  # part of the spec: stopped in reverse start order, one by one
                self._start(child)
                started.append(child)
        except BaseException:
            for child in reversed(started):
                incarnations.terminate(child, "a sibling failed to start")
            for child in list(self._children):
                self._remove(child)
            self._unregister()
            raise

    def on_stop(self) -> None:
        """Stop every child (reverse start order), leave the registry, refuse what is queued.

        Runs in the supervisor's own thread; each child's stop is bounded by
        its ``shutdown_s``. If it raises, the supervisor's exit becomes a crash.
        """
        self._terminate_all("supervisor shutting down")
        self._unregister()
        self.mailbox.closed = True
        self.system.dead_letters(self.path, self.mailbox.drain())

    def on_failure(self, *exc_info: Any) -> None:
        """A crash of the supervisor itself still stops its children (in its own thread)."""
        self.on_stop()

    def on_receive(self, message: Any) -> Any:
        """One message, in the supervisor's own thread; what a request raises goes to its caller."""
        kind = type(message)
        if kind is ChildExit:
            trace = message.exit.trace
            message.incarnation.context.cause = trace  # the next incarnation's `restarted` joins the crash's trace
            if trace is not None:  # what it causes here (restart_scheduled, escalated) joins its trace too
                with tracing.resumed(trace):
                    return self._child_exited(message.incarnation, message.exit)
            return self._child_exited(message.incarnation, message.exit)
        if kind is RestartDue:
            return self._restart_due(message)
        if kind is StartChild:
            return self._start_child(message.spec, message.claimed)
        if kind is TerminateChild:
            return self._terminate_child(message.child_id)
        if kind is RestartChild:
            return self._restart_child(message.child_id, message.reset_state)
        if kind is DropChildren:
            return self._drop_children(message)
        if kind is Hung:
            return message.incarnation.check_hung(self.system.clock.now())
        return super().on_receive(message)

    # -- children: add, start, stop, remove ------------------------------------------

    def _add(self, spec: ChildSpec | SupervisorSpec, child_id: str, *, dynamic: bool, claimed: bool = False) -> Child:
        if child_id in self._by_id:
            raise AgentExistsError(child_id)
        context = self.system.make_context(spec, child_id, self.path, self._exit_signal)
        child = Child(spec, context, dynamic=dynamic)
        if not child.is_supervisor and not self.system.claim(child, across=not claimed):
            raise AgentExistsError(child_id)
        self._children.append(child)
        self._by_id[child_id] = child
        return child

    def _start(self, child: Child) -> None:
        """Start one incarnation; return once its ``on_start`` is done, or raise ``StartError``."""
        incarnations.start(child, self._build, self.system.clock.now)

    def _build(self, child: Child) -> Agent:
        """A new incarnation of ``child``; if this raises, its start fails."""
        spec = child.spec
        if isinstance(spec, SupervisorSpec):
            return Supervisor(child.context, spec, self.system)
        return self.system.resolve(spec)(child.context)

    def _remove(self, child: Child) -> None:
        if self._by_id.get(child.id) is not child:
            return
        del self._by_id[child.id]
        self._children.remove(child)
        if not child.is_supervisor:
            self.system.release(child)

    def _terminate_all(self, cause: str) -> None:
        """Stop every child, bounded: static children one by one in reverse start order (OTP),
        dynamic ones (added at run time, with no start order to keep) together, as OTP's
        ``simple_one_for_one`` stops its children. Two hung dynamic agents take one
        ``shutdown_s``, not two."""
        children = list(self._children)
        for batch in stop_batches(children, together=self._strategy.from_template):
            incarnations.terminate_together(batch, cause)
        self._children.clear()
        self._by_id.clear()
        for child in children:
            if not child.is_supervisor:
                self.system.release(child)

    def _unregister(self) -> None:
        if self.system.supervisors.get(self.path) is self:
            del self.system.supervisors[self.path]

    # -- exits and restarts -------------------------------------------------------

    def _child_exited(self, inc: Agent, exit_: Exit) -> None:
        child = self._by_id.get(inc.context.agent_id)
        if child is None or child.incarnation is not inc:
            return  # an incarnation we already stopped or replaced
        rule = restart_rule(child.spec.restart)
        restart = exit_.kind != "fenced" and rule.should_restart(exit_)  # fenced: it runs elsewhere now
        child.last_exit = exit_
        child.settle(ChildStatus.RESTARTING if restart else ChildStatus.FAILED if exit_.is_crash else ChildStatus.STOPPED)
        child.incarnation = None
        if inc.thread is not None and not inc.abandoned:
            inc.thread.join(1.0)  # it is past its last line; let it end
        if exit_.kind == "fenced":
            self._remove(child)  # it runs elsewhere now: gone from here before anyone hears it stopped
        if not exit_.is_crash:
            child.context.emit("stopped", exit_.describe(), {})
        if not restart:
            if exit_.is_crash:
                child.context.emit("stopped", f"not restarted (restart={child.spec.restart})", {})
            if exit_.kind != "fenced":
                self.system.give_up(child)  # ended for good by its restart type: its id is free again
            if rule.removed or child.dynamic or exit_.kind == "fenced":
                self._remove(child)
            else:
                child.context.mailbox.closed = True
                self.system.dead_letters(child.id, child.context.mailbox.drain())
            return
        if not self._count_restart(child):
            return
        targets = self._strategy.targets(self._children, child)
        for other in reversed(targets):  # each stopped to restart, but a temporary one
            if other is not child and other.incarnation is not None:
                again = not restart_rule(other.spec.restart).removed
                incarnations.terminate(other, f"{child.id} exited ({exit_.describe()})", restarting=again)
        for other in targets:
            if restart_rule(other.spec.restart).removed:
                self._remove(other)  # OTP: temporary siblings are not restarted (the child is not temporary)
        self._restart_or_schedule(child, [t for t in targets if self._by_id.get(t.id) is t])

    def _count_restart(self, child: Child) -> bool:
        """Record one restart (OTP's ``add_restart``); escalate and return False past the intensity."""
        if self._window.record(self.system.clock.now()):
            self._escalate(child)
            return False
        self.system.counters.add("restarts")
        return True

    def _restart_or_schedule(self, first: Child, targets: list[Child]) -> None:
        """Restart ``targets`` now, or after the backoff of ``first``, the child that exited."""
        now = self.system.clock.now()
        backoff = getattr(first.spec, "backoff", None) or self.spec.backoff
        delay = 0.0
        if backoff is not None:
            if first.started_at and now - first.started_at >= backoff.stable_after_s:
                first.backoff_attempt = 0
            delay = backoff.delay_s(first.backoff_attempt, self._rand.random())
            first.backoff_attempt += 1
        if delay <= 0.0:
            self._restart(targets)
            return
        token = object()
        for t in targets:
            t.back_off(now + delay, token)
            # Callers whose deadline comes before the restart hear `restarting` now, not a timeout later.
            for late in t.context.mailbox.answer_late(now + delay):
                deliver(late.reply_to, error=RestartingError(t.id, delay))
        due = RestartDue(tuple(targets), token, counted=True)
        self.system.clock.call_later(delay, lambda: self.mailbox.put(Letter(due)))
        first.context.emit(
            "restart_scheduled", f"backoff {delay:.3f} s",
            {"delay_s": delay, "attempt": first.backoff_attempt, "children": [t.id for t in targets]},
        )

    def _restart_due(self, due: RestartDue) -> None:
        live = [c for c in due.children if self._by_id.get(c.id) is c]
        if due.token is not None:
            live = [c for c in live if c.restart_token is due.token]
        if not live:
            return
        if due.counted:
            self._restart(live)
        elif self._count_restart(live[0]):
            self._restart_or_schedule(live[0], live)

    def _restart(self, targets: list[Child]) -> None:
        for i, child in enumerate(targets):
            if self._by_id.get(child.id) is not child:
                continue
            child.settle(ChildStatus.RESTARTING)
            child.context.restart_count += 1
            try:
                self._start(child)
            except StartError as exc:
                # OTP: a child that fails to restart is tried again, and each
                # try counts against the restart intensity.
                logger.error("restart of %s failed: %s", child.id, exc, extra={"agent_id": child.id})
                rest = tuple(targets[i:])
                for c in rest:
                    c.settle(ChildStatus.RESTARTING)
                self.mailbox.put(Letter(RestartDue(rest, None, counted=False)))
                return

    def _escalate(self, child: Child) -> None:
        reason = f"more than {self.spec.intensity} restart(s) in {self.spec.period_s} s"
        logger.error("supervisor %s: %s; escalating", self.path, reason, extra={"supervisor": self.path})
        self._emit_own("intensity_exceeded", reason, {"child": child.id})
        last = child.last_exit  # the crash that tipped it (before the shutdown below replaces it)
        if not self.context.supervisor:
            self.system.closing = True  # the root gives up: from here on, callers learn the tree is going down
        self._terminate_all("restart intensity exceeded")
        self._emit_own("escalated", reason, {"parent": self.context.supervisor or None})
        self.exit("shutdown", "reached_max_restart_intensity", last.exception if last is not None else None)

    def _emit_own(self, event_type: str, reason: str, data: dict[str, Any]) -> None:
        self.system.bus.emit(
            event_type, supervisor=self.path, kind="supervisor", reason=reason,
            restart_count=self.context.restart_count, data=data,
        )
