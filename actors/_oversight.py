"""``Oversight``: what a supervisor does to an incarnation from another thread.

Stop it (``request_stop``), give up on it (``abandon``), and the watchdog's
hung-handler check (``overdue``, ``check_hung``). A running async command or
hook is cancelled for real through the incarnation's loop
(``IncarnationLoop.cancel_threadsafe``, the one call into that loop from
another thread); a sync one can only be told (``cancelled``) and, past its
bound, abandoned: its thread is counted in ``leaked_threads`` until it returns.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from collections.abc import Callable

from mistersmith.errors import AgentFailedError, CommandTimeoutError, MisterSmithError

from ._aio import ANYTHING, COMMAND, IncarnationLoop
from ._context import AgentContext
from ._mailbox import Exit, Letter, Mailbox, Order, ReplySlot, StopRequest, deliver

__all__ = ["Oversight"]

logger = logging.getLogger("mistersmith.agent")


class Oversight:
    """A mixin of ``Agent``: the calls its supervisor makes (each says in which thread)."""

    if TYPE_CHECKING:
        agent_id: str
        context: AgentContext
        mailbox: Mailbox
        cancelled: threading.Event
        thread: threading.Thread | None
        _aio: IncarnationLoop
        _lock: threading.Lock
        _stop_exit: Exit | None
        _stop_restarting: bool | None
        _busy_since: float | None
        _overdue_since: float | None
        _idle_seen: float | None
        _progress_at: float | None
        _order: Order | None
        _busy_command: str | None
        _busy_async: bool
        _reply: ReplySlot | None
        _exit_sent: bool

        _slots: dict[Order, Any] | None

        def stop_order(self, order: Order) -> None: ...
        def _overdue_slots(self, now: float) -> bool: ...
        def _check_slots(self, now: float) -> bool: ...
        _abandoned: bool
        _leaked: bool
        _finished: bool

    @property
    def abandoned(self) -> bool:
        """True once its supervisor gave up on this thread (it never reports an exit then)."""
        return self._abandoned

    def request_stop(self, exit_: Exit, *, restarting: bool = False) -> None:
        """Ask this incarnation to stop after its current message; a running async command is cancelled
        (its caller gets ``restarting`` if ``restarting``, else what a caller of a stopped agent gets)."""
        if self._stop_exit is None:
            self._stop_exit = exit_
        if self._stop_restarting is None:
            self._stop_restarting = restarting
        self.cancelled.set()
        self._aio.cancel_threadsafe(COMMAND)
        self.mailbox.put(Letter(StopRequest(self)))

    def abandon(self) -> bool:
        """Give up on a thread that will not stop (its async work, if any, is cancelled): counted as
        leaked until it returns. False if it already exited."""
        with self._lock:
            if self._exit_sent:
                return False
            self._exit_sent = self._abandoned = self._leaked = True
        self.cancelled.set()
        self._aio.cancel_threadsafe(ANYTHING)
        self.context.counters.add("abandoned_threads")
        self.context.counters.add("leaked_threads")
        return True

    def overdue(self, now: float) -> bool:
        """True, once, when the running handler has passed ``command_timeout_s``, or has reported no
        progress for ``idle_timeout_s`` (any thread; no side effect but remembering that it said so)."""
        if self._slots is not None:
            return self._overdue_slots(now)
        since = self._busy_since
        if since is None:
            return False
        limit, idle, last = self.context.command_timeout_s, self.context.idle_timeout_s, self._progress_at
        if limit is not None and now - since >= limit and self._overdue_since != since:
            self._overdue_since = since
            return True
        if idle is not None and last is not None and now - last >= idle and self._idle_seen != last:
            self._idle_seen = last
            return True
        return False

    def check_hung(self, now: float) -> bool:
        """Act on a handler past its bounds. Past ``command_timeout_s`` the incarnation fails: an async
        handler is cancelled and given ``shutdown_s`` to unwind (its thread then ends, uncounted); a
        sync one is abandoned. Silent for ``idle_timeout_s``, its caller gets ``timeout``: an async
        handler is cancelled and the agent lives on; a sync one is abandoned, as when it hangs.

        Runs in the supervisor's thread (the watchdog sends it ``Hung``); a failure emits ``failed``.
        """
        if self._slots is not None:
            return self._check_slots(now)
        since, limit, idle = self._busy_since, self.context.command_timeout_s, self.context.idle_timeout_s
        if since is None:
            return False
        if limit is not None and now - since >= limit:
            detail = f"command {self._busy_command!r} ran longer than command_timeout_s={limit}"
            return self._fail_hung(since, detail, lambda: AgentFailedError(self.agent_id, detail))
        last = self._progress_at
        if idle is None or last is None or now - last < idle:
            return False
        name = self._busy_command or "?"
        timeout = CommandTimeoutError(self.agent_id, name, idle, idle=True)
        order = self._order
        if not self._busy_async or order is None:  # a sync handler cannot be stopped: as if it hung
            return self._fail_hung(since, str(timeout), lambda: timeout)
        with self._lock:
            if self._busy_since is not since or self._exit_sent or self._order is not order:
                return False
            reply = self._reply
        order.stopped = timeout
        deliver(reply, error=timeout)
        self.stop_order(order)
        self.context.counters.add("idle_timeouts")
        logger.warning("agent %s: %s; its command was cancelled", self.agent_id, timeout,
                       extra={"agent_id": self.agent_id})
        return True

    def _fail_hung(self, since: float, detail: str, error: Callable[[], MisterSmithError]) -> bool:
        with self._lock:
            if self._busy_since is not since or self._exit_sent:
                return False
            reply, name, cancel = self._reply, self._busy_command, self._busy_async
            if cancel:
                self._exit_sent = self._abandoned = True  # it speaks for the agent no more, yet is not leaked
        if cancel:
            self._cancel_hung()
        elif not self.abandon():
            return False
        logger.error("agent %s hung: %s", self.agent_id, detail, extra={"agent_id": self.agent_id})
        self.context.emit("failed", detail, {"command": name, "hung": True})
        deliver(reply, error=error())
        self.context.on_exit(self, Exit.crash(detail))  # type: ignore[arg-type]  # self is the Agent
        return True

    def _cancel_hung(self) -> None:
        """Cancel a hung async handler and wait (``shutdown_s``) for its thread to end; if it does not,
        it is abandoned and counted as leaked, like a sync one. In the supervisor's thread."""
        self.cancelled.set()
        self._aio.cancel_threadsafe(ANYTHING)
        if self.thread is not None:
            self.thread.join(self.context.shutdown_s or 0.0)
        with self._lock:
            if self._finished:
                return
            self._leaked = True
        self.context.counters.add("abandoned_threads")
        self.context.counters.add("leaked_threads")
