"""Retries (``actors/_retry``): tenacity with exponential backoff and jitter, stopped by a deadline on the
runtime's clock. Sleeps are fakes that move a ``FakeClock``: nothing here waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from mistersmith import BreakerOpenError, FakeClock, SpecError
from mistersmith.actors._retry import async_retrying, retrying


class Flaky(Exception):
    pass


class FakeSleep:
    """Records each sleep and moves the clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self(seconds)


def failing(times: int, calls: list[float], clock: FakeClock, result: Any = "done") -> Any:
    def fn() -> Any:
        calls.append(clock.now())
        if len(calls) <= times:
            raise Flaky(f"attempt {len(calls)}")
        return result

    return fn


def test_backs_off_exponentially_and_returns_once_it_works() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    r = retrying(clock.now, lambda: None, attempts=5, initial_s=1.0, max_s=100.0, jitter_s=0.0, sleep=sleep)
    assert isinstance(r, tenacity.Retrying)
    assert r(failing(3, calls, clock)) == "done"
    assert sleep.slept == [1.0, 2.0, 4.0] and calls == [0.0, 1.0, 3.0, 7.0]


def test_never_sleeps_past_the_deadline_and_raises_the_last_error() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    r = retrying(clock.now, lambda: 10.0, attempts=None, initial_s=1.0, max_s=100.0, jitter_s=0.0, sleep=sleep)
    with pytest.raises(Flaky, match="attempt 4"):  # the error itself, not tenacity's RetryError
        r(failing(100, calls, clock))
    assert sleep.slept == [1.0, 2.0, 4.0], "the next sleep (8 s, to t=15) would pass the deadline at t=10"
    assert clock.now() == 7.0 < 10.0


def test_attempts_bound_too() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    r = retrying(clock.now, lambda: 1e9, attempts=2, initial_s=0.1, jitter_s=0.0, sleep=sleep)
    with pytest.raises(Flaky, match="attempt 2"):
        r(failing(5, calls, clock))
    assert len(calls) == 2


def test_the_deadline_is_read_before_each_sleep() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    deadline = [100.0]
    r = retrying(clock.now, lambda: deadline[0], attempts=None, initial_s=1.0, jitter_s=0.0, sleep=sleep)

    def fn() -> None:
        calls.append(clock.now())
        if len(calls) == 2:
            deadline[0] = clock.now() + 1.5  # e.g. the caller's timeout came nearer
        raise Flaky(len(calls))

    with pytest.raises(Flaky):
        r(fn)
    assert sleep.slept == [1.0] and len(calls) == 2


def test_breaker_open_is_not_retried_and_retry_on_narrows() -> None:
    clock = FakeClock(0.0)
    sleep = FakeSleep(clock)
    r = retrying(clock.now, lambda: None, sleep=sleep)
    with pytest.raises(BreakerOpenError):
        r(lambda: (_ for _ in ()).throw(BreakerOpenError("llm", 5.0)))
    r = retrying(clock.now, lambda: None, retry_on=Flaky, sleep=sleep)
    with pytest.raises(KeyError):
        r(lambda: {}["x"])
    assert sleep.slept == []


def test_a_callers_stop_is_added_to_the_deadline_not_instead() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    r = retrying(clock.now, lambda: 2.5, attempts=None, initial_s=1.0, jitter_s=0.0, sleep=sleep,
                 stop=tenacity.stop_after_attempt(100))
    with pytest.raises(Flaky):
        r(failing(100, calls, clock))
    assert sleep.slept == [1.0]


def test_async_retrying_awaits_its_sleep_and_honours_the_deadline() -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []

    async def main() -> None:
        r = async_retrying(clock.now, lambda: 3.5, attempts=None, initial_s=1.0, jitter_s=0.0, sleep=sleep.asleep)
        assert isinstance(r, tenacity.AsyncRetrying)
        with pytest.raises(Flaky):
            async for attempt in r:
                with attempt:
                    failing(100, calls, clock)()

    asyncio.run(main())
    assert sleep.slept == [1.0, 2.0] and len(calls) == 2 + 1


@given(initial=st.floats(0.01, 5.0), jitter=st.floats(0.0, 2.0), max_s=st.floats(0.1, 30.0),
       deadline=st.floats(0.0, 200.0))
def test_waits_stay_within_backoff_jitter_and_deadline(initial: float, jitter: float, max_s: float,
                                                       deadline: float) -> None:
    clock = FakeClock(0.0)
    sleep, calls = FakeSleep(clock), []
    r = retrying(clock.now, lambda: deadline, attempts=8, initial_s=initial, max_s=max_s, jitter_s=jitter,
                 sleep=sleep)
    with pytest.raises(Flaky):
        r(failing(100, calls, clock))
    for n, slept in enumerate(sleep.slept):
        base = min(initial * 2 ** n, max_s)
        assert base <= slept <= base + jitter
    assert clock.now() < deadline or sleep.slept == []


def test_bad_settings_are_refused_naming_the_key() -> None:
    clock = FakeClock()
    for key, value in (("attempts", 0), ("initial_s", -1.0), ("max_s", float("nan")), ("jitter_s", True)):
        with pytest.raises(SpecError, match=key):
            retrying(clock.now, lambda: None, **{key: value})
