"""IntensityWindow: OTP's sliding restart window, as a pure function of clock readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistersmith.supervisors import IntensityWindow


def test_intensity_restarts_are_allowed_one_more_is_not() -> None:
    window = IntensityWindow(intensity=3, period_s=10.0)
    assert [window.record(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert window.record(3.0) is True
    assert window.count(3.0) == 4


def test_restarts_leave_the_window_after_period_s() -> None:
    window = IntensityWindow(intensity=2, period_s=10.0)
    assert not window.record(0.0)
    assert not window.record(4.0)
    assert window.count(9.9) == 2
    assert window.count(10.5) == 1
    assert not window.record(11.0)  # the restart at 0.0 has left the window
    assert window.count(11.0) == 2
    assert window.record(12.0)  # 4.0, 11.0, 12.0: three in 10 s


def test_zero_intensity_refuses_the_first_restart() -> None:
    assert IntensityWindow(intensity=0, period_s=1.0).record(0.0) is True


def test_a_restart_exactly_period_s_old_still_counts() -> None:
    """OTP keeps restarts with R >= Now - Period in the window."""
    window = IntensityWindow(intensity=1, period_s=1.0)
    assert not window.record(1.0)
    assert window.count(2.0) == 1
    assert window.record(2.0)


@pytest.mark.parametrize("spread", [0.01, 0.5, 1.5])
def test_restarts_spread_out_never_exceed(spread: float) -> None:
    window = IntensityWindow(intensity=1, period_s=1.0)
    now = 0.0
    results = []
    for _ in range(100):
        now += 1.0 + spread
        results.append(window.record(now))
    assert not any(results)
    assert window.count(now) == 1


gaps = st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=1, max_size=60)


@given(st.integers(0, 6), st.floats(0.5, 30.0), gaps)
def test_matches_a_reference_model(intensity: int, period_s: float, deltas: list[float]) -> None:
    """record(now) is True exactly when more than ``intensity`` restarts fall in [now - period_s, now]."""
    window = IntensityWindow(intensity, period_s)
    now = 0.0
    seen: list[float] = []
    for delta in deltas:
        now += delta
        seen.append(now)
        in_window = [t for t in seen if now - t <= period_s]
        assert window.record(now) == (len(in_window) > intensity)
        assert window.count(now) == len(in_window)
