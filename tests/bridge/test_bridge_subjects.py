"""Subjects: built from tokens only, parsed back exactly. Pure, no I/O."""

from __future__ import annotations

import pytest

from mistersmith.bridge import subjects
from mistersmith.errors import SpecError
from mistersmith.subjects import SUBJECT_TEMPLATES


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
    assert subjects.CONTROL_ACTIONS == ("spawn", "stop", "restart", "list", "get", "ping", "shutdown", "tree", "kinds",
                                       "state", "nodes", "drain", "rebalance")
    assert subjects.NODE_ACTIONS == ("spawn", "ping", "shutdown", "kinds", "drain", "rebalance")


def test_every_builder_fills_in_the_one_template() -> None:
    assert subjects.command("a1", "run") == SUBJECT_TEMPLATES["commands"].format(agent_id="a1", command="run")
    assert subjects.status("a1", "failed") == SUBJECT_TEMPLATES["status"].format(agent_id="a1", event_type="failed")
    assert subjects.supervisor_events("n1", "started") == "system.events.n1.started"
    assert subjects.nodes("here") == "system.nodes.here"
    assert (subjects.ANNOUNCE, subjects.QUERY) == ("agents.discovery.announce", "agents.discovery.query")


def test_wildcards_check_the_fields_they_are_given() -> None:
    assert subjects.wildcard("control") == "system.control.*"
    assert subjects.wildcard("node_control", node_id="n1") == "system.node.n1.*"
    assert subjects.wildcard("discoveries") == "discoveries.*.*"
    assert subjects.wildcard("task_queue", kind="coder") == "tasks.coder.queue.*"
    assert subjects.wildcard("task_result") == "tasks.*.result"
    assert subjects.agent_control_wildcard("a1") == "agents.a1.control.*"
    with pytest.raises(SpecError, match="node_id"):
        subjects.wildcard("node_control", node_id="a.b")
    with pytest.raises(SpecError, match="name"):
        subjects.wildcard("no-such-subject")


def test_control_subjects_are_parsed_back() -> None:
    assert subjects.parse_control("system.control.spawn") == subjects.ControlSubject("spawn")
    node = subjects.parse_control("system.node.n1.ping")
    assert (node.action, node.node_id, node.agent_id, node.routed) == ("ping", "n1", None, True)
    agent = subjects.parse_control("agents.a1.control.stop")
    assert (agent.action, agent.agent_id, agent.node_id, agent.routed) == ("stop", "a1", None, True)
    assert not subjects.parse_control("system.control.list").routed
    assert subjects.parse_nodes("system.nodes.bye") == "bye"


@pytest.mark.parametrize("bad", ["system.control", "system.node.n1", "agents.a1.commands.run", "x.control.spawn",
                                 "system.control.a.b"])
def test_parse_control_refuses_other_subjects(bad: str) -> None:
    with pytest.raises(ValueError):
        subjects.parse_control(bad)


@pytest.mark.parametrize("bad", ["system.nodes", "system.nodes.shout", "system.node.hello", "system.nodes.a.b"])
def test_parse_nodes_refuses_other_subjects(bad: str) -> None:
    with pytest.raises(ValueError):
        subjects.parse_nodes(bad)
