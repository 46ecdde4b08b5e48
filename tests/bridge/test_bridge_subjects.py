"""Subjects: built from tokens only, parsed back exactly. Pure, no I/O."""

from __future__ import annotations

import pytest

from mistersmith.bridge import subjects
from mistersmith.errors import SpecError


def test_building_and_parsing() -> None:
    assert subjects.command("a1", "run") == "agents.a1.commands.run"
    assert subjects.parse_command("agents.a1.commands.run") == ("a1", "run")
    assert subjects.command_wildcard("a1") == "agents.a1.commands.*"
    assert subjects.status("a1", "restarted") == "agents.a1.status.restarted"
    assert subjects.control("spawn") == "system.control.spawn"
    assert subjects.node_control("n1", "spawn") == "system.node.n1.spawn"
    assert subjects.agent_control("a1", "stop") == "agents.a1.control.stop"
    assert subjects.task_queue("coder", "high") == "tasks.coder.queue.high"
    assert subjects.task_dead("coder") == "tasks.coder.dead"
    assert subjects.task_progress("t1") == "tasks.t1.progress"
    assert subjects.task_result("t1") == "tasks.t1.result"


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a*", ">", "a\n", "x" * 129, None, 3])
def test_tokens_are_refused_with_the_key(bad: object) -> None:
    assert not subjects.is_token(bad)
    with pytest.raises(SpecError, match="agent_id"):
        subjects.command(bad, "run")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["agents.a1.status.x", "agents.a1.commands", "x.a1.commands.run", "agents.a.b.commands.c"])
def test_parse_refuses_other_subjects(bad: str) -> None:
    with pytest.raises(ValueError):
        subjects.parse_command(bad)


def test_actions_and_priorities_are_checked() -> None:
    with pytest.raises(SpecError, match="spawn"):
        subjects.control("explode")
    with pytest.raises(SpecError, match="high"):
        subjects.task_queue("k", "urgent")
    assert subjects.CONTROL_ACTIONS == ("spawn", "stop", "restart", "list", "get", "ping", "shutdown", "tree", "kinds")
    assert subjects.NODE_ACTIONS == ("spawn", "ping", "shutdown", "kinds")
