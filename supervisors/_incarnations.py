"""Starting and stopping a child's incarnations, each step bounded.

Every function here runs in the owning supervisor's thread: ``start`` waits at
most the child's ``start_timeout_s``, a stop at most its ``shutdown_s``; a
thread still running then is abandoned (Python threads cannot be killed) and
reported. They keep the child's ``status`` up to date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from mistersmith.actors import Agent, Exit
from mistersmith.errors import StartError

from ._child import Child, ChildStatus

__all__ = ["start", "terminate", "terminate_together"]

logger = logging.getLogger("mistersmith.supervisor")


def start(child: Child, build: Callable[[Child], Agent], now: Callable[[], float]) -> None:
    """Start one incarnation (``build(child)`` makes it); return once its ``on_start`` is done.

    Raises ``StartError`` if it cannot be built, its ``on_start`` raises or outlives
    ``start_timeout_s``; the child's status is then what it was.
    """
    spec = child.spec
    ctx = child.context
    try:
        inc = build(child)
    except Exception as exc:
        detail = f"__init__ raised {exc!r}"
        ctx.emit("failed", detail, {"phase": "init"})
        raise StartError(child.id, detail) from exc
    ctx.mailbox.closed = False
    before = child.status
    child.incarnation = inc
    child.settle(ChildStatus.RUNNING)
    inc.start_thread()
    if not inc.started.wait(spec.start_timeout_s):
        child.status = before
        child.incarnation = None
        detail = f"on_start did not finish within start_timeout_s={spec.start_timeout_s}"
        if inc.abandon():
            ctx.emit("failed", detail, {"phase": "start"})
        raise StartError(child.id, detail)
    if inc.start_error is not None:
        child.status = before
        child.incarnation = None
        raise StartError(child.id, f"on_start raised {inc.start_error!r}") from inc.start_error
    child.started_at = now()


def _request_stop(child: Child, cause: str, restarting: bool) -> Agent | None:
    """Ask a child's incarnation to stop after its current message; it, or None if it had none
    (the child is stopped then, its pending restart, if any, called off). ``restarting``: the
    stop is for a restart (a command it cancels is answered ``restarting``)."""
    child.last_exit = Exit.shutdown(cause)
    inc = child.incarnation
    if inc is None:
        child.settle(ChildStatus.STOPPED)
    else:
        inc.request_stop(Exit.shutdown(cause), restarting=restarting)
    return inc


def _await_stop(child: Child, inc: Agent, deadline: float) -> None:
    """Wait for ``inc`` to end until ``deadline`` (``time.monotonic()``), then abandon it; emits ``stopped``."""
    thread = inc.thread
    if thread is not None:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive() and inc.abandon():
            detail = f"did not stop within shutdown_s={child.spec.shutdown_s}; abandoned"
            logger.error("agent %s %s", child.id, detail, extra={"agent_id": child.id})
            child.context.emit("shutdown_timeout", detail, {"shutdown_s": child.spec.shutdown_s})
    child.settle(ChildStatus.STOPPED)
    child.incarnation = None
    child.context.emit("stopped", child.last_exit.describe() if child.last_exit else None, {})


def terminate(child: Child, cause: str, *, restarting: bool = False) -> None:
    """Stop a child's incarnation within its ``shutdown_s`` (``restarting``: to start it again)."""
    terminate_together((child,), cause, restarting=restarting)


def terminate_together(children: Sequence[Child], cause: str, *, restarting: bool = False) -> None:
    """Stop several children at once: each is asked to stop, then waited for within its own
    ``shutdown_s`` from that moment (two hung ones take one ``shutdown_s``, not two)."""
    asked = [(child, _request_stop(child, cause, restarting)) for child in children]
    since = time.monotonic()
    for child, inc in asked:
        if inc is not None:
            _await_stop(child, inc, since + child.spec.shutdown_s)
