"""Circuit breakers: one per dependency of an agent (an LLM API, a database), kept across its restarts.

A ``CircuitBreaker`` follows Nygard's state machine, as pybreaker and
aiobreaker users know it:

- ``closed``: calls go through; ``failure_threshold`` consecutive failures
  open it (a success sets the count back to 0);
- ``open``: calls are refused at once with ``BreakerOpenError`` (its
  ``retry_after_s`` says for how long) until ``reset_s`` have passed;
- ``half_open``: ``reset_s`` after it opened, one trial call goes through
  (the others are still refused); its success closes the breaker, its failure
  opens it again for another ``reset_s``.

Each opening (``closed`` -> ``open``, and a failed trial) calls ``on_open``
once, outside the breaker's lock (``Breakers`` emits the ``breaker_open``
supervision event there). A failure is an ``Exception`` not in ``exclude``;
an excluded one counts as a success, as in pybreaker (the dependency
answered: a "not found" is no outage); anything else (``CancelledError``,
``KeyboardInterrupt``...) is neither a success nor a failure (a trial cut
short so lets the next call try). The
outcome of a call admitted before the breaker last changed state is ignored,
so a slow call from before it opened cannot close it.

Time is the runtime's clock (``now``: monotonic seconds, a ``FakeClock`` in
tests); nothing here sleeps. pybreaker reads the wall clock and runs async
code only under tornado, purgatory reads ``time.time()``: neither takes an
injected clock, hence this small module.

Threads: any. A breaker is shared by an agent's incarnations (and so, for a
moment, by an abandoned incarnation's thread and its successor's), so every
transition holds its lock.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from mistersmith.errors import BreakerOpenError, SpecError

__all__ = [
    "BREAKER_STATES", "CLOSED", "DEFAULT_FAILURE_THRESHOLD", "DEFAULT_RESET_S", "HALF_OPEN", "OPEN", "Breakers",
    "CircuitBreaker",
]

logger = logging.getLogger("mistersmith.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RESET_S = 30.0

P = ParamSpec("P")
R = TypeVar("R")
OnOpen = Callable[["CircuitBreaker", str, BaseException | None], None]

# The calls admitted by ``with breaker:`` blocks now open in this thread or task: (breaker, ticket).
_ADMITTED: contextvars.ContextVar[tuple[tuple[CircuitBreaker, int], ...]] = contextvars.ContextVar(
    "mistersmith_breaker_admitted", default=())


class CircuitBreaker:
    """One dependency's breaker. Use it as ``with breaker:`` / ``async with breaker:``, as a decorator
    (``@breaker``, sync or async functions), or as ``breaker.call(fn, ...)`` / ``await breaker.acall(fn, ...)``."""

    def __init__(
        self,
        name: str,
        *,
        now: Callable[[], float],
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        reset_s: float = DEFAULT_RESET_S,
        exclude: tuple[type[BaseException], ...] = (),
        on_open: OnOpen | None = None,
        agent_id: str | None = None,
    ) -> None:
        check_settings(agent_id, name, failure_threshold, reset_s)
        self.name = name
        self.agent_id = agent_id
        self.failure_threshold = failure_threshold
        self.reset_s = float(reset_s)
        self.exclude = exclude
        self._now = now
        self._on_open = on_open
        self._lock = threading.Lock()
        self._failures = 0  # consecutive, while closed
        self._opened_at: float | None = None  # None: closed
        self._trial_at: float | None = None  # when the half-open trial now running was admitted
        self._generation = 0  # bumped at every transition: a ticket from an older one is stale
        self.openings = 0

    # -- what it is -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (``reset_s`` after opening, even before the trial)."""
        with self._lock:
            return self._state(self._now())

    def _state(self, now: float) -> str:
        if self._opened_at is None:
            return CLOSED
        return HALF_OPEN if now >= self._opened_at + self.reset_s else OPEN

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far (while closed; the count that opened it, once open)."""
        return self._failures

    def info(self) -> dict[str, Any]:
        """``{"state", "failures", "failure_threshold", "reset_s", "openings", "retry_after_s"}``, JSON-compatible
        (``retry_after_s``: how long calls are still refused, None while closed)."""
        with self._lock:
            now = self._now()
            state = self._state(now)
            retry = None if state == CLOSED else self._retry_after(now)
            return {"state": state, "failures": self._failures, "failure_threshold": self.failure_threshold,
                    "reset_s": self.reset_s, "openings": self.openings, "retry_after_s": retry}

    def _retry_after(self, now: float) -> float:
        assert self._opened_at is not None
        if self._trial_at is not None:
            return max(0.0, self._trial_at + self.reset_s - now)
        return max(0.0, self._opened_at + self.reset_s - now)

    # -- the state machine --------------------------------------------------------------

    def admit(self) -> int:
        """Let one call through, or raise ``BreakerOpenError``; returns its ticket for ``record``."""
        with self._lock:
            now = self._now()
            state = self._state(now)
            if state == CLOSED:
                return self._generation
            # A trial that has not reported within reset_s is taken as lost: another may go.
            if state == HALF_OPEN and (self._trial_at is None or now >= self._trial_at + self.reset_s):
                self._trial_at = now
                self._generation += 1
                return self._generation
            retry, failures, trial = self._retry_after(now), self._failures, self._trial_at is not None
        raise BreakerOpenError(self.name, retry, agent_id=self.agent_id, failures=failures, trial=trial)

    def record(self, ticket: int, error: BaseException | None) -> None:
        """The outcome of the call admitted with ``ticket``: ``error`` None for a success."""
        opened: str | None = None
        with self._lock:
            if ticket != self._generation:
                return  # admitted before the last transition: it says nothing about the breaker now
            trial = self._trial_at is not None
            if error is not None and not isinstance(error, Exception):
                if trial:  # cut short: neither outcome; the next call may try
                    self._trial_at = None
                    self._generation += 1
                return
            if error is None or isinstance(error, self.exclude):  # excluded: the dependency answered
                if trial or self._failures:
                    if trial:
                        logger.info("breaker %r of agent %s closed: the trial call succeeded", self.name,
                                    self.agent_id, extra={"agent_id": self.agent_id, "breaker": self.name})
                        self._generation += 1
                    self._failures, self._opened_at, self._trial_at = 0, None, None
                return
            if trial:
                opened = f"breaker {self.name!r} opened again: its trial call failed: {error!r}"
            else:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    opened = (f"breaker {self.name!r} opened after {self._failures} consecutive failures: "
                              f"{error!r}")
            if opened is not None:
                self._opened_at, self._trial_at = self._now(), None
                self._generation += 1
                self.openings += 1
        if opened is not None:
            logger.warning("agent %s: %s", self.agent_id, opened,
                           extra={"agent_id": self.agent_id, "breaker": self.name, "event_type": "breaker_open"})
            if self._on_open is not None:
                self._on_open(self, opened, error)

    # -- the ways to use it ----------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` through the breaker (sync code)."""
        ticket = self.admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.record(ticket, exc)
            raise
        self.record(ticket, None)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await fn(*args, **kwargs)`` through the breaker (async code)."""
        ticket = self.admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.record(ticket, exc)
            raise
        self.record(ticket, None)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """As a decorator, of a sync or an async function."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def __enter__(self) -> CircuitBreaker:
        _ADMITTED.set((*_ADMITTED.get(), (self, self.admit())))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        admitted = _ADMITTED.get()
        for i in range(len(admitted) - 1, -1, -1):  # the innermost block of this breaker
            if admitted[i][0] is self:
                _ADMITTED.set(admitted[:i] + admitted[i + 1:])
                self.record(admitted[i][1], exc)
                return
        raise RuntimeError(f"breaker {self.name!r}: __exit__ without its __enter__")

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state}>"


def check_settings(agent_id: str | None, name: object, failure_threshold: object, reset_s: object) -> None:
    """Validate a breaker's settings eagerly; each bad value is named with what is allowed."""
    if not isinstance(name, str) or not name or len(name) > 128:
        raise SpecError(agent_id, "name", name, "name a breaker with a non-empty str of at most 128 characters")
    if type(failure_threshold) is not int or failure_threshold < 1:
        raise SpecError(agent_id, "failure_threshold", failure_threshold, "use an int >= 1")
    if isinstance(reset_s, bool) or not isinstance(reset_s, (int, float)) or not 0 < reset_s < float("inf"):
        raise SpecError(agent_id, "reset_s", reset_s, "use a finite number of seconds > 0")


class Breakers:
    """One agent's breakers, by name: made on first use, kept on its lasting context (so across restarts).

    ``emit(event_type, reason, data)`` records the ``breaker_open`` supervision event. Thread-safe.
    """

    def __init__(self, agent_id: str, now: Callable[[], float],
                 emit: Callable[[str, str | None, dict[str, Any]], None]) -> None:
        self.agent_id = agent_id
        self._now = now
        self._emit = emit
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD, reset_s: float = DEFAULT_RESET_S,
            exclude: tuple[type[BaseException], ...] = ()) -> CircuitBreaker:
        """The breaker ``name``, made with these settings on first use; later uses must ask for the same."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name, now=self._now, failure_threshold=failure_threshold, reset_s=reset_s,
                                         exclude=tuple(exclude), on_open=self._opened, agent_id=self.agent_id)
                self._breakers[name] = breaker
                return breaker
        check_settings(self.agent_id, name, failure_threshold, reset_s)
        for key, have, want in (("failure_threshold", breaker.failure_threshold, failure_threshold),
                                ("reset_s", breaker.reset_s, float(reset_s)), ("exclude", breaker.exclude, tuple(exclude))):
            if have != want:
                raise SpecError(self.agent_id, key, want,
                                f"breaker {name!r} exists with {key}={have!r}; ask for the same settings "
                                "each time (or name another breaker)")
        return breaker

    def _opened(self, breaker: CircuitBreaker, reason: str, error: BaseException | None) -> None:
        self._emit("breaker_open", reason, {
            "breaker": breaker.name, "failures": breaker.failures, "failure_threshold": breaker.failure_threshold,
            "reset_s": breaker.reset_s, "openings": breaker.openings,
            "error": type(error).__name__ if error is not None else None,
        })

    def info(self) -> dict[str, dict[str, Any]]:
        """Each breaker's ``info()``, by name (``{}`` if the agent made none)."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.info() for b in breakers}

    def counts(self) -> dict[str, int]:
        """How many of its breakers are in each state: ``{"closed": n, "open": n, "half_open": n}``."""
        counts = dict.fromkeys(BREAKER_STATES, 0)
        with self._lock:
            breakers = list(self._breakers.values())
        for b in breakers:
            counts[b.state] += 1
        return counts

    def __len__(self) -> int:
        return len(self._breakers)
