"""The circuit breaker's state machine (``actors/_breaker``), on a fake clock: closed -> open after
``failure_threshold`` consecutive failures, open refuses with ``BreakerOpenError``, half_open lets one trial
through, success closes, failure re-opens; each opening is reported once. Nothing here sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistersmith import BreakerOpenError, FakeClock, MisterSmithError, SpecError
from mistersmith.actors import CircuitBreaker
from mistersmith.actors._breaker import Breakers


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


def make(clock: FakeClock, threshold: int = 3, reset_s: float = 10.0, **kwargs: Any) -> tuple[CircuitBreaker, list[str]]:
    opened: list[str] = []
    breaker = CircuitBreaker("dep", now=clock.now, failure_threshold=threshold, reset_s=reset_s,
                             on_open=lambda b, reason, error: opened.append(reason), **kwargs)
    return breaker, opened


def fail() -> None:
    raise Boom("down")


def test_opens_after_threshold_consecutive_failures_and_refuses() -> None:
    clock = FakeClock()
    breaker, opened = make(clock)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state == "closed" and breaker.failures == 2 and opened == []
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state == "open" and len(opened) == 1
    assert "3 consecutive failures" in opened[0] and "Boom('down')" in opened[0]
    clock.advance(4.0)
    ran: list[int] = []
    with pytest.raises(BreakerOpenError) as refused:
        breaker.call(lambda: ran.append(1))
    assert ran == [], "an open breaker does not call through"
    err = refused.value
    assert isinstance(err, MisterSmithError) and err.code == "breaker_open"
    assert err.name == "dep" and err.retry_after_s == pytest.approx(6.0) and err.failures == 3
    assert "6.00 s" in err.message


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, opened = make(FakeClock())
    for _ in range(5):
        for _ in range(2):
            with pytest.raises(Boom):
                breaker.call(fail)
        assert breaker.call(lambda: 7) == 7
    assert breaker.state == "closed" and breaker.failures == 0 and opened == []


def test_half_open_lets_one_trial_through_and_success_closes() -> None:
    clock = FakeClock()
    breaker, opened = make(clock, threshold=1)
    with pytest.raises(Boom):
        breaker.call(fail)
    clock.advance(10.0)
    assert breaker.state == "half_open"
    with breaker:  # the trial
        assert breaker.state == "half_open"
        with pytest.raises(BreakerOpenError) as second:  # only one trial at a time
            breaker.call(lambda: None)
        assert second.value.retry_after_s == pytest.approx(10.0) and "trial" in second.value.message
    assert breaker.state == "closed" and breaker.info()["retry_after_s"] is None
    assert breaker.call(lambda: "ok") == "ok"
    assert len(opened) == 1


def test_a_failed_trial_opens_it_again_for_reset_s_and_is_a_new_opening() -> None:
    clock = FakeClock()
    breaker, opened = make(clock, threshold=2)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    clock.advance(10.0)
    with pytest.raises(Boom):
        breaker.call(fail)  # the trial
    assert breaker.state == "open" and len(opened) == 2 and "trial call failed" in opened[1]
    assert breaker.info() == {"state": "open", "failures": 2, "failure_threshold": 2, "reset_s": 10.0,
                              "openings": 2, "retry_after_s": 10.0}
    clock.advance(9.9)
    with pytest.raises(BreakerOpenError):
        breaker.call(lambda: None)
    clock.advance(0.1)
    assert breaker.call(lambda: 1) == 1 and breaker.state == "closed"


def test_a_trial_that_never_reports_is_lost_after_reset_s() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, threshold=1)
    with pytest.raises(Boom):
        breaker.call(fail)
    clock.advance(10.0)
    stuck = breaker.admit()  # e.g. an abandoned incarnation's thread, hung in the trial
    clock.advance(10.0)
    assert breaker.call(lambda: 2) == 2 and breaker.state == "closed"
    breaker.record(stuck, Boom("late"))  # its outcome comes from an older state: ignored
    assert breaker.state == "closed" and breaker.failures == 0


def test_a_late_outcome_from_before_the_opening_is_ignored() -> None:
    clock = FakeClock()
    breaker, opened = make(clock, threshold=1)
    slow = breaker.admit()
    with pytest.raises(Boom):
        breaker.call(fail)
    breaker.record(slow, None)  # a success that began while closed cannot close it
    assert breaker.state == "open" and len(opened) == 1


def test_excluded_and_base_exceptions_are_not_failures() -> None:
    clock = FakeClock()
    breaker, opened = make(clock, threshold=2, exclude=(Ignored,))
    for exc in (KeyboardInterrupt(), asyncio.CancelledError(), Boom("one"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with breaker:
                raise exc
    assert breaker.failures == 1, "only the Boom counts"
    with pytest.raises(Ignored):
        with breaker:
            raise Ignored("not found: the dependency answered")
    assert breaker.state == "closed" and breaker.failures == 0 and opened == [], "an excluded error is a success"
    breaker, opened = make(clock, threshold=1, exclude=(Ignored,))
    with pytest.raises(Boom):
        breaker.call(fail)
    clock.advance(10.0)
    with pytest.raises(asyncio.CancelledError):
        with breaker:  # a trial cut short: neither outcome, the next call may try
            raise asyncio.CancelledError()
    assert breaker.call(lambda: 3) == 3 and breaker.state == "closed"


def test_decorator_and_async_forms() -> None:
    clock = FakeClock()
    breaker, opened = make(clock, threshold=2)

    @breaker
    def sync_dep(x: int) -> int:
        if x < 0:
            raise Boom(x)
        return x * 2

    @breaker
    async def async_dep(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise Boom(x)
        return x + 1

    async def main() -> None:
        assert await async_dep(1) == 2
        assert await breaker.acall(async_dep.__wrapped__, 2) == 3  # type: ignore[attr-defined]
        async with breaker:
            pass
        with pytest.raises(Boom):
            await async_dep(-1)
        with pytest.raises(Boom):
            async with breaker:
                raise Boom("in the block")
        with pytest.raises(BreakerOpenError):
            await async_dep(5)

    assert sync_dep(4) == 8 and sync_dep.__name__ == "sync_dep"
    asyncio.run(main())
    assert breaker.state == "open" and len(opened) == 1
    with pytest.raises(BreakerOpenError):
        sync_dep(1)


def test_nested_blocks_of_two_breakers_record_each_its_own_outcome() -> None:
    clock = FakeClock()
    outer, _ = make(clock, threshold=1)
    inner, _ = make(clock, threshold=1)
    with pytest.raises(Boom):
        with outer:
            with inner:
                pass
            raise Boom("outer only")
    assert (outer.state, inner.state) == ("open", "closed")


@pytest.mark.parametrize(("key", "kwargs"), [
    ("failure_threshold", {"failure_threshold": 0}), ("failure_threshold", {"failure_threshold": 2.0}),
    ("reset_s", {"reset_s": 0}), ("reset_s", {"reset_s": float("inf")}), ("reset_s", {"reset_s": True}),
])
def test_bad_settings_are_refused_naming_the_key(key: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as err:
        CircuitBreaker("dep", now=FakeClock().now, **kwargs)
    assert key in str(err.value)


def test_breakers_registry_keeps_one_per_name_and_refuses_other_settings() -> None:
    clock = FakeClock()
    events: list[tuple[str, str | None, dict[str, Any]]] = []
    breakers = Breakers("a1", clock.now, lambda *e: events.append(e))
    llm = breakers.get("llm", 1, 5.0)
    assert breakers.get("llm", 1, 5) is llm
    with pytest.raises(SpecError) as err:
        breakers.get("llm", 2, 5.0)
    assert "failure_threshold=1" in str(err.value)
    breakers.get("db")
    with pytest.raises(Boom):
        llm.call(fail)
    assert breakers.counts() == {"closed": 1, "open": 1, "half_open": 0}
    clock.advance(5.0)
    assert breakers.counts() == {"closed": 1, "open": 0, "half_open": 1}
    assert breakers.info()["db"]["state"] == "closed" and breakers.info()["llm"]["state"] == "half_open"
    ((event_type, reason, data),) = events
    assert event_type == "breaker_open" and reason is not None and "'llm'" in reason
    assert data == {"breaker": "llm", "failures": 1, "failure_threshold": 1, "reset_s": 5.0, "openings": 1,
                    "error": "Boom"}


# -- the model: any sequence of calls and clock moves --------------------------------------

steps = st.lists(st.one_of(st.just("ok"), st.just("fail"), st.floats(0.0, 15.0)), max_size=60)


@given(threshold=st.integers(1, 4), script=steps)
def test_matches_a_simple_model(threshold: int, script: list[Any]) -> None:
    clock = FakeClock()
    reset_s = 10.0
    breaker, opened = make(clock, threshold=threshold, reset_s=reset_s)
    failures, opened_at, openings = 0, None, 0  # the model
    for step in script:
        if isinstance(step, float):
            clock.advance(step)
            continue
        now = clock.now()
        if opened_at is not None and now < opened_at + reset_s:
            with pytest.raises(BreakerOpenError) as refused:
                breaker.call(fail if step == "fail" else lambda: None)
            assert refused.value.retry_after_s == pytest.approx(opened_at + reset_s - now)
            continue
        trial = opened_at is not None
        if step == "ok":
            breaker.call(lambda: None)
            failures, opened_at = 0, None
        else:
            with pytest.raises(Boom):
                breaker.call(fail)
            if trial:
                opened_at, openings = now, openings + 1
            else:
                failures += 1
                if failures >= threshold:
                    opened_at, openings = now, openings + 1
        expected = "closed" if opened_at is None else "open"
        assert breaker.state == expected
        assert len(opened) == openings == breaker.openings
