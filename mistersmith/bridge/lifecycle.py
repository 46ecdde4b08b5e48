"""Stopping the bridge's own asyncio tasks, bounded.

``cancel_and_wait`` cancels tasks and waits for them at most ``timeout_s``,
cancelling again while any is still pending (Python 3.11's ``asyncio.wait_for``
can swallow a cancellation that races with its inner future, so one
``cancel()`` is not always enough). A task that still will not stop is
abandoned, logged and counted in the return value, never waited on forever.
Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

__all__ = ["cancel_and_wait"]

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
