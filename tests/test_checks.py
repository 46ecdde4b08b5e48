"""``mistersmith.checks``: each refusal names the key, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mistersmith import checks
from mistersmith.errors import SpecError


@pytest.mark.parametrize(
    ("check", "value", "allowed"),
    [
        (lambda v: checks.number("k", v), 0, "use a finite number > 0"),
        (lambda v: checks.number("k", v), float("nan"), "use a finite number > 0"),
        (lambda v: checks.number("k", v), float("inf"), "use a finite number > 0"),
        (lambda v: checks.number("k", v), True, "use a finite number > 0"),
        (lambda v: checks.number("k", v), "1", "use a finite number > 0"),
        (lambda v: checks.number("k", v, minimum=1.0, strict=False), 0.5, "use a finite number >= 1"),
        (lambda v: checks.number("k", v, maximum=2.0), 3, "use a finite number > 0 and <= 2"),
        (lambda v: checks.seconds("k", v), 0, "use a number of seconds > 0"),
        (lambda v: checks.seconds("k", v, zero=True), -1, "use a number of seconds >= 0"),
        (lambda v: checks.count("k", v), 0, "use an integer >= 1"),
        (lambda v: checks.count("k", v), 2.0, "use an integer >= 1"),
        (lambda v: checks.count("k", v), False, "use an integer >= 1"),
        (lambda v: checks.count("k", v, minimum=0, maximum=9), 10, "use an integer from 0 to 9"),
        (lambda v: checks.port("k", v), 65536, "use a port number from 0 to 65535 (0 picks a free one)"),
        (lambda v: checks.text("k", v), "", "use a non-empty string"),
        (lambda v: checks.text("k", v, allowed="use a path"), None, "use a path"),
        (lambda v: checks.choice("k", v, ("a", "b")), "c", "use one of: a, b"),
    ],
)
def test_a_refusal_names_key_value_and_what_is_allowed(check: Callable[[Any], Any], value: Any,
                                                        allowed: str) -> None:
    with pytest.raises(SpecError) as refused:
        check(value)
    assert (refused.value.key, refused.value.allowed) == ("k", allowed)
    assert refused.value.value is value
    assert str(refused.value) == f"k={value!r} is not allowed; {allowed}"


def test_accepted_values_come_back() -> None:
    assert checks.number("k", 2) == 2.0 and isinstance(checks.number("k", 2), float)
    assert checks.number("k", 0, strict=False) == 0.0
    assert checks.seconds("k", 0, zero=True) == 0.0
    assert checks.count("k", 0, minimum=0) == 0
    assert checks.port("k", 0) == 0
    assert checks.text("k", "x") == "x"
    assert checks.choice("k", "b", ("a", "b")) == "b"


def test_a_child_is_named_too() -> None:
    with pytest.raises(SpecError, match=r"^child 'w': shutdown_s=-1 is not allowed; ") as refused:
        checks.seconds("shutdown_s", -1, child="w")
    assert refused.value.child == "w"
