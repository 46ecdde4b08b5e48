"""``tree_at``: the tree rebuilt from the journal alone matches what the runtime showed then."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from mistersmith import AgentFailedError, ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from conftest_pg import JournalNode

LIVE_STATES = {"idle": "running", "busy": "running"}


def flatten(tree: dict[str, Any]) -> dict[str, tuple[str, str, int | None]]:
    """``{path: (type, state, restart_count)}`` of a tree (live or rebuilt)."""
    out: dict[str, tuple[str, str, int | None]] = {}

    def walk(node: dict[str, Any], parent: str) -> None:
        path = node.get("path") or f"{parent}/{node['id']}"
        state = str(node["state"])
        out[path] = (node["type"], LIVE_STATES.get(state, state), node.get("restart_count"))
        for child in node.get("children", []):
            walk(child, path)

    walk(tree, "")
    out["root"] = (out["root"][0], out["root"][1], None)  # the live root has no restart count
    return out


def journal_head(node: JournalNode) -> int:
    assert node.journal.flush(10)
    with psycopg.connect(node.journal.conninfo) as conn:
        row = conn.execute("SELECT max(seq) FROM supervision_events").fetchone()
    assert row is not None
    return int(row[0])


def crash(node: JournalNode, agent: str) -> None:
    with pytest.raises(AgentFailedError):
        node.runtime.ask(agent, "fail", timeout=5)
    node.runtime.ask(agent, "ping", timeout=5)


def test_tree_at_every_step_of_a_recorded_scenario(node: JournalNode) -> None:
    rt = node.runtime
    fragile = SupervisorSpec("fragile", intensity=0, children=(ChildSpec("s1", "echo"),))

    def escalate() -> None:
        with rt.subscribe(agent_id="fragile", event_types=["restarted"]) as sub:
            with pytest.raises(AgentFailedError):
                rt.ask("d1", "fail", timeout=5)
            sub.get(10)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("workers", lambda: rt.add_supervisor(SupervisorSpec("workers", intensity=50))),
        ("a1", lambda: rt.spawn("echo", "a1", supervisor="root/workers", config={"n": 1})),
        ("a2", lambda: rt.spawn("echo", "a2", supervisor="root/workers", restart="transient")),
        ("crash a1", lambda: crash(node, "a1")),
        ("pause a2", lambda: rt.ask("a2", "pause", timeout=5)),
        ("fragile", lambda: rt.add_supervisor(fragile)),
        ("d1", lambda: rt.spawn("echo", "d1", supervisor="root/fragile")),
        ("escalate", escalate),
        ("stop a1", lambda: rt.stop("a1")),
        ("crash a2 twice", lambda: (rt.ask("a2", "resume", timeout=5), crash(node, "a2"), crash(node, "a2"))),
    ]
    recorded: list[tuple[str, int, dict[str, tuple[str, str, int | None]]]] = []
    for name, step in steps:
        step()
        recorded.append((name, journal_head(node), flatten(rt.tree())))

    assert "root/fragile/d1" in recorded[6][2] and "root/fragile/d1" not in recorded[7][2]
    for name, seq, live in recorded:
        rebuilt = node.journal.tree_at(seq)
        assert rebuilt.as_of_seq == seq
        assert flatten(rebuilt.tree("n1")) == live, f"after step {name!r}"

    snapshot = node.journal.tree_at()
    assert snapshot.agent("a2").incarnation == 2
    assert snapshot.agent("a2").restart == "transient"
    with pytest.raises(KeyError):
        snapshot.agent("a1")  # stopped on purpose
    # the registry the writer keeps agrees with the projection rebuilt from the journal
    registry = {r["path"]: (r["state"], r["desired_state"], r["restart_count"]) for r in node.journal.registry("n1")}
    assert registry == {r.path: (r.state, r.desired_state, r.incarnation) for r in snapshot.records}


def test_tree_at_a_datetime(node: JournalNode) -> None:
    rt = node.runtime
    rt.spawn("echo", "a1")
    journal_head(node)
    events = list(node.journal.replay())
    moment = events[-1].occurred_at
    rt.spawn("echo", "a2")
    journal_head(node)
    at_moment = node.journal.tree_at(moment)
    assert [r.agent_id for r in at_moment.agents()] == ["a1"]
    assert at_moment.as_of_seq == events[-1].seq
    assert [r.agent_id for r in node.journal.tree_at().agents()] == ["a1", "a2"]


def test_tree_at_before_anything_is_empty(node: JournalNode) -> None:
    assert node.journal.tree_at(0).records == ()
    assert node.journal.tree_at(0).tree("n1")["children"] == []
