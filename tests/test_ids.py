"""Ids: one rule (a NATS subject token), as a check, a predicate and a newline-safe JSON Schema pattern."""

from __future__ import annotations

import re

import jsonschema
import pytest

from mistersmith.errors import SpecError
from mistersmith.ids import ID_PATTERN, ID_RULE, check_id, is_id
from mistersmith.supervisors import check_id as supervisors_check_id
from mistersmith.web.schemas import ID

BAD = ["", "a.b", "a b", "a*", ">", "a\n", "x" * 129, None, 3]
GOOD = ["a", "A-1_b", "x" * 128]


@pytest.mark.parametrize("good", GOOD)
def test_good_ids_pass_everywhere(good: str) -> None:
    assert is_id(good) and check_id(good) == good
    jsonschema.validate(good, ID)


@pytest.mark.parametrize("bad", BAD)
def test_bad_ids_are_refused_everywhere(bad: object) -> None:
    assert not is_id(bad)
    with pytest.raises(SpecError) as err:
        check_id(bad, "agent_id", "child-1")
    assert (err.value.key, err.value.allowed) == ("agent_id", ID_RULE)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, ID)


def test_one_definition() -> None:
    assert supervisors_check_id is check_id
    assert ID["pattern"] == ID_PATTERN
    assert re.search(ID_PATTERN, "abc\n") is None  # "$" would let the newline through
