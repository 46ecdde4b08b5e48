"""The subject templates: every subject stated once, filled in and widened to wildcards."""

from __future__ import annotations

import pytest

from mistersmith.discovery import discovery_subject
from mistersmith.subjects import SUBJECT_TEMPLATES, render, wildcard


def test_templates_are_the_public_subjects() -> None:
    assert SUBJECT_TEMPLATES["commands"] == "agents.{agent_id}.commands.{command}"
    assert SUBJECT_TEMPLATES["discoveries"] == "discoveries.{agent_id}.{discovery_type}"
    assert SUBJECT_TEMPLATES["query"] == "agents.discovery.query"
    with pytest.raises(TypeError):
        SUBJECT_TEMPLATES["commands"] = "x"  # type: ignore[index]


def test_render_and_wildcard() -> None:
    assert render("task_queue", kind="k", priority="high") == "tasks.k.queue.high"
    assert wildcard("status") == "agents.*.status.*"
    assert wildcard("status", event_type="failed") == "agents.*.status.failed"
    assert wildcard("announce") == "agents.discovery.announce"
    assert discovery_subject("a1", "insight") == "discoveries.a1.insight"
    with pytest.raises(ValueError, match="colour"):
        wildcard("status", colour="red")
