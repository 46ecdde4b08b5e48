"""Ids: the one rule for every name that becomes a NATS subject token. Pure.

Agent ids, node ids, supervisor ids, kinds, command names on the wire, task
ids and discovery ids are all 1-128 letters, digits, ``_`` or ``-``: exactly
one token of a NATS subject (no dots, wildcards or spaces), so any id can be
put in a subject as it is. The supervisors (``check_id``), the bridge
(``subjects.is_token``), discoveries and the web's JSON Schemas (``ID_PATTERN``)
all use this rule.
"""

from __future__ import annotations

import re

from mistersmith.errors import SpecError

__all__ = ["ID_CHARS", "ID_PATTERN", "ID_RULE", "check_id", "is_id"]

ID_CHARS = r"[A-Za-z0-9_-]{1,128}"
"""The rule as a regular expression, unanchored (to build other patterns from)."""

ID_RULE = "use 1-128 letters, digits, '_' or '-'"
"""What an error says is allowed."""

# Not "$": in Python's re (which jsonschema uses) it also matches before a final
# newline, so "abc\n" would pass. "(?![\s\S])" is the end of the string in
# ECMA-262 and Python alike.
ID_PATTERN = rf"^{ID_CHARS}(?![\s\S])"
"""The rule as a JSON Schema ``pattern`` (anchored at both ends, newline-safe)."""

_ID = re.compile(ID_CHARS)


def is_id(value: object) -> bool:
    """True if ``value`` is a valid id (and so one subject token)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: object, key: str = "id", child: str | None = None) -> str:
    """``value`` if it is a valid id, else ``SpecError`` naming ``child``, ``key`` and the rule."""
    if not is_id(value):
        raise SpecError(child, key, value, ID_RULE)
    assert isinstance(value, str)
    return value
