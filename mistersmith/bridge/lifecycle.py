"""The bridge's own asyncio tasks and subscriptions: tracked, and stopped without fuss.

- ``TaskSet``: the tasks one part of the bridge starts (one per request, say);
  each is forgotten once done, and ``close`` stops those still running.
- ``cancel_and_wait`` cancels tasks and waits for them at most ``timeout_s``,
  cancelling again while any is still pending (Python 3.11's ``asyncio.wait_for``
  can swallow a cancellation that races with its inner future, so one
  ``cancel()`` is not always enough). A task that still will not stop is
  abandoned, logged and counted in the return value, never waited on forever.
- ``unsubscribe_quietly``: unsubscribing at close, where a failure (a closed
  connection: nothing is left to undo) is logged at debug level, never raised.

Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any

from nats.aio.subscription import Subscription

__all__ = ["TaskSet", "cancel_and_wait", "unsubscribe_quietly"]

logger = logging.getLogger("mistersmith.bridge")

_RETRY_S = 0.05


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]], timeout_s: float) -> int:
    """Cancel ``tasks`` and wait until they end; returns how many were abandoned."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            for task in pending:
                logger.error("bridge task %s did not stop within %.2f s; abandoned", task.get_name(), timeout_s)
            return len(pending)
        _, pending = await asyncio.wait(pending, timeout=min(_RETRY_S, remaining))
    return 0


class TaskSet:
    """Tasks that run on their own and are kept (a strong reference) until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run ``coro`` as a task of this set; it leaves the set when it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout_s: float) -> int:
        """``cancel_and_wait`` on the tasks still running; returns how many were abandoned."""
        return await cancel_and_wait(self, timeout_s)


async def unsubscribe_quietly(subs: Iterable[Subscription | None], what: str) -> None:
    """Unsubscribe each of ``subs`` (``None`` is skipped); a failure is logged at debug level
    under ``what`` and never raised."""
    for sub in subs:
        if sub is None:
            continue
        try:
            await sub.unsubscribe()
        except Exception as exc:  # a closed connection: nothing left to undo
            logger.debug("%s unsubscribe: %r", what, exc)
