"""``ResilienceMethods``: what agent code calls about its dependencies, ``self.breaker`` and ``self.retry``.

- ``self.breaker(name, failure_threshold=5, reset_s=30)``: the agent's circuit
  breaker for one dependency (``_breaker``). It lives on the agent's lasting
  context, so every incarnation gets the same one and a restart does not
  reset it. Its opening emits ``breaker_open``; the agent lives on.
- ``self.retry(...)`` / ``self.aretry(...)``: a ``tenacity.Retrying`` /
  ``AsyncRetrying`` with exponential backoff and jitter (``_retry``), stopped
  by the running command's deadlines: its ``command_timeout_s``, its caller's
  timeout and its ``idle_timeout_s`` (which moves with its progress). A sync
  retry's sleep ends early, with ``CancelledError``, when the incarnation is
  being stopped; an async one's is an ``asyncio.sleep``, cancelled as the
  handler is.

Threads: all of it runs in the incarnation's thread (a breaker may be shared
with an abandoned incarnation's thread; it is thread-safe).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import tenacity

from ._breaker import DEFAULT_FAILURE_THRESHOLD, DEFAULT_RESET_S, CircuitBreaker
from ._context import AgentContext
from ._retry import DEFAULT_ATTEMPTS, DEFAULT_INITIAL_S, DEFAULT_JITTER_S, DEFAULT_MAX_S, async_retrying, retrying

__all__ = ["ResilienceMethods"]


class ResilienceMethods:
    """A mixin of ``Agent``: breakers and retries for the dependencies its handlers call."""

    if TYPE_CHECKING:
        agent_id: str
        context: AgentContext
        cancelled: threading.Event
        _busy_since: float | None

    def breaker(self, name: str, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD, reset_s: float = DEFAULT_RESET_S,
                *, exclude: tuple[type[BaseException], ...] = ()) -> CircuitBreaker:
        """This agent's circuit breaker for the dependency ``name``, made on first use with these settings
        (later uses, in this incarnation or another, must ask for the same: ``SpecError`` otherwise).

        Use it as ``with`` / ``async with``, as a decorator, or ``call(fn, ...)`` / ``await acall(fn, ...)``.
        ``failure_threshold`` consecutive failures (exceptions not in ``exclude``) open it: calls then
        raise ``BreakerOpenError`` (code ``breaker_open``: a handler that lets it through replies with it and
        the agent lives) until ``reset_s`` have passed; then one trial call goes through (``half_open``): its
        success closes the breaker, its failure opens it again. Each opening emits ``breaker_open``.
        Its state shows in the agent's status (``breakers``) and in the node's metrics.
        """
        return self.context.breakers.get(name, failure_threshold, reset_s, exclude)

    def retry(
        self, *, attempts: int | None = DEFAULT_ATTEMPTS, initial_s: float = DEFAULT_INITIAL_S,
        max_s: float = DEFAULT_MAX_S, jitter_s: float = DEFAULT_JITTER_S,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        timeout_s: float | None = None, sleep: Callable[[float], None] | None = None, **options: Any,
    ) -> tenacity.Retrying:
        """A ``tenacity.Retrying`` for sync code: ``for attempt in self.retry(): with attempt: ...``, or
        ``self.retry()(fn, *args)``, or ``@self.retry().wraps``.

        Between attempts it waits ``initial_s * 2**n`` (at most ``max_s``) plus up to ``jitter_s`` at random;
        it makes at most ``attempts`` (None: as many as the deadline allows) and never sleeps past the running
        command's deadline (nor ``timeout_s`` from now): it stops there and raises the last error as it was.
        ``BreakerOpenError`` is not retried. ``options`` go to tenacity (``before_sleep``, ``retry``...).
        """
        deadline = self._retry_deadline(timeout_s)
        return retrying(self.context.clock.now, deadline, attempts=attempts, initial_s=initial_s, max_s=max_s,
                        jitter_s=jitter_s, retry_on=retry_on, sleep=sleep or self._retry_sleep,
                        agent_id=self.agent_id, **options)

    def aretry(
        self, *, attempts: int | None = DEFAULT_ATTEMPTS, initial_s: float = DEFAULT_INITIAL_S,
        max_s: float = DEFAULT_MAX_S, jitter_s: float = DEFAULT_JITTER_S,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        timeout_s: float | None = None, sleep: Callable[[float], Awaitable[None]] | None = None, **options: Any,
    ) -> tenacity.AsyncRetrying:
        """``retry`` for async code: ``async for attempt in self.aretry(): with attempt: ...``,
        or ``await self.aretry()(fn, *args)``. The same rules; it sleeps with ``asyncio.sleep``."""
        deadline = self._retry_deadline(timeout_s)
        return async_retrying(self.context.clock.now, deadline, attempts=attempts, initial_s=initial_s,
                              max_s=max_s, jitter_s=jitter_s, retry_on=retry_on, sleep=sleep or asyncio.sleep,
                              agent_id=self.agent_id, **options)

    def _retry_deadline(self, timeout_s: float | None) -> Callable[[], float | None]:
        """The running command's deadline now: the soonest of its ``command_timeout_s``, its caller's
        timeout, its ``idle_timeout_s`` since its last progress, and ``timeout_s`` from this call."""
        ctx = self.context
        own = None if timeout_s is None else ctx.clock.now() + timeout_s
        since = self._busy_since
        order = getattr(self, "_order", None)  # the command running now, where the agent keeps it
        caller = getattr(order, "deadline", None)

        def deadline() -> float | None:
            bounds = [b for b in (own, caller) if b is not None]
            if since is not None and ctx.command_timeout_s is not None:
                bounds.append(since + ctx.command_timeout_s)
            idle, progress_at = getattr(ctx, "idle_timeout_s", None), getattr(self, "_progress_at", None)
            if idle is not None and progress_at is not None:
                bounds.append(progress_at + idle)
            return min(bounds) if bounds else None

        return deadline

    def _retry_sleep(self, seconds: float) -> None:
        """A sync retry's sleep: ends early, raising ``CancelledError``, once the incarnation is stopping."""
        if self.cancelled.wait(seconds):
            raise asyncio.CancelledError("the incarnation is stopping")
