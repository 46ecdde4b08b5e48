"""The @command decorator and CommandSpec.check, without threads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistersmith import Agent, command
from mistersmith.actors import CommandSpec


class Typed(Agent):
    @command("run")
    def run(self, name: str, count: int = 1, ratio: float = 0.5, flag: bool = False,
            tags: list = [], extra: dict = {}, anything: Any = None) -> None:  # type: ignore[type-arg]  # noqa: B006
        """Bare ``list``/``dict`` are what the payload check knows how to check."""
        pass

    @command
    def bare(self) -> str:
        return "bare"

    @command("open")
    def open_ended(self, must: str, **rest: Any) -> None:
        pass


def spec(name: str) -> CommandSpec:
    return Typed._commands[name]


def test_the_table_knows_each_commands_parameters() -> None:
    run = spec("run")
    assert run.method == "run" and not run.builtin
    assert run.required == {"name"}
    assert run.accepted == frozenset({"name", "count", "ratio", "flag", "tags", "extra", "anything"})
    assert "anything" not in run.types
    assert spec("bare").required == frozenset() and spec("bare").accepted == frozenset()
    assert spec("open").accepted is None and spec("open").required == {"must"}
    assert {"status", "ping", "pause", "resume"} <= set(Typed._commands)
    assert all(Typed._commands[b].builtin for b in ("status", "ping", "pause", "resume"))


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"name": "x"}, None),
        ({"name": "x", "count": 2, "ratio": 1, "flag": True, "tags": [1], "extra": {}, "anything": object()}, None),
        ({"name": "x", "ratio": 2.5}, None),
        ({}, "missing ['name']"),
        ({"count": 1}, "missing ['name']"),
        ({"name": "x", "bogus": 1, "also": 2}, "unexpected ['also', 'bogus']; accepted: ['anything', 'count',"),
        ({"name": 1}, "name=1 should be str"),
        ({"name": "x", "count": "2"}, "count='2' should be int"),
        ({"name": "x", "count": 2.0}, "count=2.0 should be int"),
        ({"name": "x", "count": True}, "count=True should be int"),
        ({"name": "x", "ratio": False}, "ratio=False should be int or float"),
        ({"name": "x", "flag": 1}, "flag=1 should be bool"),
        ({"name": "x", "tags": "a"}, "tags='a' should be list"),
        ({"name": "x", "extra": []}, "extra=[] should be dict"),
    ],
)
def test_check(payload: dict[str, Any], problem: str | None) -> None:
    found = spec("run").check(payload)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_check_with_var_keywords_accepts_any_extra_key() -> None:
    assert spec("open").check({"must": "m", "whatever": [1]}) is None
    assert spec("open").check({"whatever": 1}) == "missing ['must']"
    assert spec("bare").check({}) is None
    assert spec("bare").check({"x": 1}) == "unexpected ['x']; accepted: []"


@given(
    st.fixed_dictionaries(
        {"name": st.text()},
        optional={
            "count": st.integers(),
            "ratio": st.integers() | st.floats(allow_nan=False),
            "flag": st.booleans(),
            "tags": st.lists(st.integers()),
            "extra": st.dictionaries(st.text(), st.integers()),
        },
    )
)
def test_well_typed_payloads_always_fit(payload: dict[str, Any]) -> None:
    assert spec("run").check(payload) is None


@given(st.dictionaries(st.text(min_size=1).filter(lambda k: k != "must"), st.integers(), min_size=1))
def test_payloads_missing_a_required_key_never_fit(payload: dict[str, Any]) -> None:
    assert spec("open").check(payload) == "missing ['must']"


@pytest.mark.parametrize("name", ["", "has space", "dot.ted", "x" * 65, "ümlaut"])
def test_command_names_are_subject_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        command(name)(lambda self: None)


def test_a_builtin_name_cannot_be_taken() -> None:
    with pytest.raises(TypeError, match="built-in"):

        class Clash(Agent):
            @command("ping")
            def my_ping(self) -> None:
                pass


def test_positional_only_parameters_are_refused() -> None:
    with pytest.raises(TypeError, match="keyword parameter"):

        class Positional(Agent):
            @command("p")
            def p(self, x: int, /) -> None:
                pass


def test_subclasses_inherit_and_override_commands() -> None:
    class Child(Typed):
        @command("run")
        def run2(self, other: int) -> None:
            pass

    assert Child._commands["run"].method == "run2"
    assert Child._commands["run"].required == {"other"}
    assert "bare" in Child._commands
    assert Typed._commands["run"].method == "run"
