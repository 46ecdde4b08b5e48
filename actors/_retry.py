"""Retries: tenacity, configured for exponential backoff with jitter, and stopped by the agent's deadlines.

``retrying(...)`` and ``async_retrying(...)`` build a ``tenacity.Retrying`` /
``tenacity.AsyncRetrying`` (``Agent.retry`` / ``Agent.aretry`` call them with
the running command's deadline). Everything tenacity does is left to it: the
attempt loop, the wait (``wait_exponential`` plus ``wait_random`` jitter), the
stop, re-raising. Ours is one stop strategy, ``stop_at_deadline``: it stops
before a sleep that would end at or past the deadline, so a retry never sleeps
past it, and (``reraise=True``) the last error is raised as it was, not a
``RetryError``.

The deadline is read from the runtime's clock (``now``), never from
tenacity's own ``time.monotonic()``, and it is read again before each sleep
(it may move: an idle timeout moves with the command's progress). Sleeps are
injectable too (``sleep``), so tests move a fake clock instead of waiting.

A ``BreakerOpenError`` is not retried by default: the breaker said when to try
again, and it is usually later than the deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from tenacity import RetryCallState

from mistersmith.errors import BreakerOpenError, SpecError

__all__ = [
    "DEFAULT_ATTEMPTS", "DEFAULT_INITIAL_S", "DEFAULT_JITTER_S", "DEFAULT_MAX_S", "async_retrying", "retrying",
    "stop_at_deadline",
]

DEFAULT_ATTEMPTS = 5
DEFAULT_INITIAL_S = 0.5
DEFAULT_MAX_S = 30.0
DEFAULT_JITTER_S = 0.5

Deadline = Callable[[], float | None]
"""The deadline now, on the runtime's clock (None: no deadline)."""


class stop_at_deadline(tenacity.stop.stop_base):  # noqa: N801 (tenacity's naming)
    """Stop before the next attempt if waiting for it would reach ``deadline()`` (on ``now``'s clock)."""

    def __init__(self, now: Callable[[], float], deadline: Deadline) -> None:
        self.now = now
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        deadline = self.deadline()
        return deadline is not None and self.now() + retry_state.upcoming_sleep >= deadline


def _options(
    now: Callable[[], float], deadline: Deadline, *, attempts: int | None, initial_s: float, max_s: float,
    jitter_s: float, retry_on: type[BaseException] | tuple[type[BaseException], ...], agent_id: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    if attempts is not None and (type(attempts) is not int or attempts < 1):
        raise SpecError(agent_id, "attempts", attempts, "use an int >= 1, or None for as many as the deadline allows")
    for key, value in (("initial_s", initial_s), ("max_s", max_s), ("jitter_s", jitter_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise SpecError(agent_id, key, value, "use a finite number of seconds >= 0")
    if "sleep" in options and options["sleep"] is None:
        del options["sleep"]
    stop: tenacity.stop.stop_base = stop_at_deadline(now, deadline)
    if attempts is not None:
        stop = stop | tenacity.stop_after_attempt(attempts)
    if "stop" in options:  # the caller's stop as well, never instead of the deadline
        stop = stop | options.pop("stop")
    wait = tenacity.wait_exponential(multiplier=initial_s, max=max_s) + tenacity.wait_random(0, jitter_s)
    retry = tenacity.retry_if_exception_type(retry_on) & tenacity.retry_if_not_exception_type(BreakerOpenError)
    return {"stop": stop, "wait": wait, "retry": retry, "reraise": True, **options}


def retrying(
    now: Callable[[], float], deadline: Deadline, *, attempts: int | None = DEFAULT_ATTEMPTS,
    initial_s: float = DEFAULT_INITIAL_S, max_s: float = DEFAULT_MAX_S, jitter_s: float = DEFAULT_JITTER_S,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    sleep: Callable[[float], None] | None = None, agent_id: str | None = None, **options: Any,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` for sync code: wait ``initial_s * 2**n`` (at most ``max_s``) plus up to
    ``jitter_s`` at random between attempts; at most ``attempts`` of them; never past ``deadline()``.

    ``options`` go to tenacity as they are (``before_sleep``, ``retry`` to replace ``retry_on``, ``wait``...);
    a ``stop`` there is added to the deadline's, never instead of it.
    """
    opts = _options(now, deadline, attempts=attempts, initial_s=initial_s, max_s=max_s, jitter_s=jitter_s,
                    retry_on=retry_on, agent_id=agent_id, options={"sleep": sleep, **options})
    return tenacity.Retrying(**opts)


def async_retrying(
    now: Callable[[], float], deadline: Deadline, *, attempts: int | None = DEFAULT_ATTEMPTS,
    initial_s: float = DEFAULT_INITIAL_S, max_s: float = DEFAULT_MAX_S, jitter_s: float = DEFAULT_JITTER_S,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    sleep: Callable[[float], Awaitable[None]] | None = None, agent_id: str | None = None, **options: Any,
) -> tenacity.AsyncRetrying:
    """``retrying`` for async code: a ``tenacity.AsyncRetrying`` (its sleep: ``asyncio.sleep`` unless given)."""
    opts = _options(now, deadline, attempts=attempts, initial_s=initial_s, max_s=max_s, jitter_s=jitter_s,
                    retry_on=retry_on, agent_id=agent_id, options={"sleep": sleep, **options})
    return tenacity.AsyncRetrying(**opts)
