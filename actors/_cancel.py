"""Cancelling one command: by its caller, or because its caller's deadline passed.

``cancel_letter`` works from any thread on a command that is queued or running:

1. its caller is answered at once with the error given (``cancelled``, or
   ``timeout`` when its deadline passed): a command that already answered is
   left alone (False);
2. a queued command is marked (``Order.stopped``): no incarnation will run it,
   and the agent drops it when it reaches it;
3. a running one is stopped (``CommandCancel.stop_order``): an async handler's
   task is cancelled for real (it sees ``CancelledError``, its ``finally``
   runs); a sync handler sees ``self.cancelled`` set, until it returns.

A cancelled command is not a crash: the agent lives on, and a durable agent's
state goes back to its last commit, since its caller was told it did not finish.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._aio import IncarnationLoop
from ._mailbox import Letter, Mailbox, Order, deliver

__all__ = ["CommandCancel", "cancel_letter", "untrack"]


def cancel_letter(mailbox: Mailbox, letter: Letter, error: BaseException, incarnation: Any, *,
                  answer: bool = True) -> bool:
    """Cancel ``letter``'s command (any thread); ``incarnation`` is the agent's current one, or None.

    ``answer``: tell its caller ``error`` (False when the caller is the one who gave up: it knows).
    False if it had already answered (it finished first).
    """
    order = letter.message
    if type(order) is not Order or order.stopped is not None:
        return False
    if answer and letter.reply_to is not None and not deliver(letter.reply_to, error=error):
        return False
    order.stopped = error
    untrack(mailbox, letter)
    if incarnation is not None:
        incarnation.stop_order(order)
    return True


def untrack(mailbox: Mailbox, letter: Letter) -> None:
    """Forget ``letter`` as cancellable by its correlation id (a later command may reuse the id)."""
    cid = letter.message.correlation_id
    if cid is not None and mailbox.tracked.get(cid) is letter:
        mailbox.tracked.pop(cid, None)


class CommandCancel:
    """A mixin of ``Agent``: the running command, and stopping it from another thread."""

    if TYPE_CHECKING:
        cancelled: threading.Event
        _aio: IncarnationLoop
        _lock: threading.Lock
        _order: Order | None
        _stop_exit: Any
        _abandoned: bool
        _slots: dict[Order, Any] | None

        def _stop_slot(self, order: Order) -> bool: ...

    def stop_order(self, order: Order) -> None:
        """Stop ``order`` if this incarnation runs it now (any thread; it was answered already)."""
        if self._slots is not None:  # a concurrent incarnation: cancel that one command's task
            self._stop_slot(order)
            return
        with self._lock:
            if self._order is not order:
                return  # not started yet (it is dropped when reached) or over
            self.cancelled.set()  # a sync handler's cooperative signal, until it returns
        self._aio.cancel_command_threadsafe()

    def _begin_order(self, order: Order) -> bool:
        """Make ``order`` the running command (this thread); False if it was cancelled meanwhile."""
        with self._lock:
            if order.stopped is not None:
                return False
            self._order = order
            return True

    def _end_order(self) -> Order | None:
        """The command ended (this thread, under ``_lock``): undo what a cancel of it set; the order it was."""
        order, self._order = self._order, None
        if order is not None and order.stopped is not None:
            self._aio.command_done()
            if self._stop_exit is None and not self._abandoned:
                self.cancelled.clear()
        return order
