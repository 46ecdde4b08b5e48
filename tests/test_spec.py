"""Supervision specs: eager validation, SpecError messages, defaults, Backoff.delay_s."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistersmith import Agent, Backoff, ChildSpec, SpecError, SupervisorSpec, command
from mistersmith.supervisors import DEFAULTS

# (builder, child named in the error, key, bad value, words of what is allowed)
BAD_CHILD: list[tuple[dict[str, Any], str, Any, str]] = [
    ({"restart": "forever"}, "restart", "forever", "permanent, transient, temporary"),
    ({"shutdown_s": -1}, "shutdown_s", -1, ">= 0"),
    ({"shutdown_s": math.inf}, "shutdown_s", math.inf, "finite"),
    ({"command_timeout_s": 0}, "command_timeout_s", 0, "> 0"),
    ({"mailbox_size": 0}, "mailbox_size", 0, "integer >= 1"),
    ({"mailbox_size": 2.5}, "mailbox_size", 2.5, "integer >= 1"),
    ({"mailbox_size": True}, "mailbox_size", True, "integer >= 1"),
    ({"stash_limit": -1}, "stash_limit", -1, "integer >= 0"),
    ({"start_timeout_s": 0.0}, "start_timeout_s", 0.0, "> 0"),
    ({"config": {"f": object}}, "config", None, "JSON-compatible"),
    ({"config": [1]}, "config", [1], "JSON object"),
    ({"backoff": 1.0}, "backoff", 1.0, "Backoff("),
    ({"kind": "bad kind"}, "kind", "bad kind", "letters, digits"),
    ({"kind": int}, "kind", int, "Agent subclass"),
]


@pytest.mark.parametrize(("fields", "key", "value", "allowed"), BAD_CHILD)
def test_child_spec_errors_name_child_key_value_and_what_is_allowed(
    fields: dict[str, Any], key: str, value: Any, allowed: str
) -> None:
    spec: dict[str, Any] = {"id": "w1", "kind": "echo", **fields}
    with pytest.raises(SpecError) as err:
        ChildSpec(**spec)
    error = err.value
    assert isinstance(error, ValueError)
    assert error.code == "invalid_spec"
    assert error.child == "w1" and error.key == key
    if value is not None:
        assert error.value == value or (isinstance(value, float) and math.isnan(value))
        assert repr(value) in error.message
    assert allowed in error.allowed
    assert error.message.startswith(f"child 'w1': {key}=")
    assert allowed in error.message


@pytest.mark.parametrize("bad_id", ["", "a b", "a.b", "x" * 129, 7, "ünï"])
def test_ids_are_subject_tokens(bad_id: Any) -> None:
    with pytest.raises(SpecError) as err:
        ChildSpec(bad_id, "echo")
    assert err.value.key == "id" and "1-128 letters" in err.value.allowed
    with pytest.raises(SpecError):
        SupervisorSpec(bad_id)


BAD_SUPERVISOR: list[tuple[dict[str, Any], str, str]] = [
    ({"strategy": "all_for_one"}, "strategy", "one_for_one, one_for_all, rest_for_one, simple_one_for_one"),
    ({"intensity": -1}, "intensity", "integer >= 0"),
    ({"intensity": 1.5}, "intensity", "integer >= 0"),
    ({"period_s": 0}, "period_s", "> 0"),
    ({"period_s": math.nan}, "period_s", "finite"),
    ({"restart": "always"}, "restart", "permanent"),
    ({"shutdown_s": -0.5}, "shutdown_s", ">= 0"),
    ({"template": ChildSpec(None, "echo")}, "template", "simple_one_for_one only"),
    ({"strategy": "simple_one_for_one"}, "template", "needs a ChildSpec template"),
    (
        {"strategy": "simple_one_for_one", "template": ChildSpec(None, "echo"), "children": (ChildSpec("c", "echo"),)},
        "children",
        "use template",
    ),
    ({"children": (ChildSpec(None, "echo"),)}, "children", "give every static child an id"),
    ({"children": ("echo",)}, "children", "ChildSpec or SupervisorSpec"),
]


@pytest.mark.parametrize(("fields", "key", "allowed"), BAD_SUPERVISOR)
def test_supervisor_spec_errors(fields: dict[str, Any], key: str, allowed: str) -> None:
    with pytest.raises(SpecError) as err:
        SupervisorSpec("sup", **fields)
    assert err.value.child == "sup" and err.value.key == key
    assert allowed in err.value.allowed
    assert f"{key}=" in err.value.message


def test_duplicate_child_ids_name_the_child() -> None:
    with pytest.raises(SpecError) as err:
        SupervisorSpec("sup", children=(ChildSpec("a", "echo"), ChildSpec("a", "echo")))
    assert err.value.child == "a" and err.value.key == "id"
    assert "unique" in err.value.allowed and "'sup'" in err.value.allowed


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"min_s": -1.0}, "backoff.min_s"),
        ({"min_s": 2.0, "max_s": 1.0}, "backoff.max_s"),
        ({"factor": 0.5}, "backoff.factor"),
        ({"jitter": -0.1}, "backoff.jitter"),
        ({"reset_after_s": 0.0}, "backoff.reset_after_s"),
        ({"max_s": math.inf}, "backoff.max_s"),
    ],
)
def test_backoff_errors(fields: dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError) as err:
        Backoff(**fields)
    assert err.value.key == key
    assert f"{key}=" in err.value.message and "is not allowed" in err.value.message


def test_specs_are_frozen_and_config_is_read_only() -> None:
    config = {"a": 1}
    spec = ChildSpec("w", "echo", config=config)
    config["a"] = 2
    assert spec.config == {"a": 1}
    with pytest.raises(TypeError):
        spec.config["a"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.restart = "temporary"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        SupervisorSpec("s").intensity = 3  # type: ignore[misc]


def test_defaults_are_otps_where_otp_has_one() -> None:
    spec = SupervisorSpec("s")
    assert (spec.strategy, spec.intensity, spec.period_s) == ("one_for_one", 1, 5.0)
    child = ChildSpec("c", "echo")
    assert child.restart == "permanent" == DEFAULTS.restart
    assert child.shutdown_s == DEFAULTS.agent_shutdown_s
    assert child.mailbox_size == 10_000
    assert child.stash_limit == DEFAULTS.stash_limit == 100 and child.backoff is None
    assert math.isfinite(spec.shutdown_s)  # bounded, unlike OTP's infinity
    assert Backoff().stable_after_s == Backoff().max_s


def test_kind_name_of_a_class() -> None:
    class Anonymous(Agent):
        pass

    class Named(Agent):
        kind = "named"

    assert ChildSpec("a", Anonymous).kind_name == "Anonymous"
    assert ChildSpec("b", Named).kind_name == "named"
    assert ChildSpec("c", "echo").kind_name == "echo"


# -- Backoff.delay_s ----------------------------------------------------------------

backoffs = st.builds(
    lambda lo, span, factor, jitter: Backoff(min_s=lo, max_s=lo + span, factor=factor, jitter=jitter),
    st.floats(0.001, 100.0),
    st.floats(0.0, 1000.0),
    st.floats(1.0, 10.0),
    st.floats(0.0, 1.0),
)
rands = st.floats(0.0, 1.0, exclude_max=True)


def test_delay_examples() -> None:
    b = Backoff(min_s=0.5, max_s=10.0, factor=3.0, jitter=0.0)
    assert [b.delay_s(n, 0.0) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    j = Backoff(min_s=1.0, max_s=10.0, factor=2.0, jitter=0.2)
    assert j.delay_s(1, 0.5) == pytest.approx(2.2)
    assert j.delay_s(9, 0.999) == pytest.approx(11.998)


@given(backoffs, st.integers(0, 5000), rands)
def test_delay_is_bounded_for_every_attempt(backoff: Backoff, attempt: int, rand: float) -> None:
    """However many restarts in a row, the delay is finite and within [min_s, max_s * (1 + jitter)]."""
    delay = backoff.delay_s(attempt, rand)
    assert math.isfinite(delay)
    assert backoff.min_s <= delay <= backoff.max_s * (1.0 + backoff.jitter) + 1e-9


@given(backoffs, st.integers(0, 200), rands)
def test_delay_never_shrinks_with_more_attempts(backoff: Backoff, attempt: int, rand: float) -> None:
    assert backoff.delay_s(attempt + 1, rand) >= backoff.delay_s(attempt, rand)


def test_delay_after_a_thousand_restarts_in_a_row() -> None:
    """A child that keeps crashing under a generous intensity reaches high attempt numbers."""
    assert Backoff(min_s=0.1, max_s=30.0).delay_s(1024, 0.0) == 30.0
    assert Backoff(min_s=0.1, max_s=30.0, factor=10.0).delay_s(400, 0.0) == 30.0


def test_ids_with_a_trailing_newline_are_refused() -> None:
    """`$` in a regex would accept 'abc\\n'; ids become NATS subject tokens, so it must not."""
    with pytest.raises(SpecError):
        ChildSpec("abc\n", "echo")
    with pytest.raises(ValueError):
        command("run\n")(lambda self: None)
