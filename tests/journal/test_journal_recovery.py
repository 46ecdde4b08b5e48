"""Recovery: a node restarted with the same node_id gets back what should run, and only that."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from mistersmith import Agent, SupervisorSpec, command
from mistersmith.recovery import health

if TYPE_CHECKING:
    from conftest_pg import NodeFactory


def recovery_events(history: list) -> list[tuple[str, str | None, str | None]]:  # type: ignore[type-arg]
    return [(e.event_type, e.agent_id, e.reason) for e in history if e.event_type == "recovered"
            or (e.event_type == "stopped" and (e.reason or "").startswith("not restarted"))]


def test_clean_restart_respawns_by_restart_type(tmp_path: Path, journal_db: str, make_node: NodeFactory) -> None:
    data = tmp_path / "node"
    first = make_node(data, journal_db)
    rt = first.runtime
    rt.add_supervisor(SupervisorSpec("workers", strategy="rest_for_one", intensity=7, period_s=3.0))
    rt.spawn("echo", "p1", supervisor="root/workers", config={"greeting": "hi"}, mailbox_size=42)
    rt.spawn("echo", "p2", supervisor="root/workers")
    rt.spawn("echo", "t1", restart="transient")
    rt.spawn("echo", "tmp1", restart="temporary")
    rt.spawn("echo", "gone")
    rt.stop("gone")
    first.close()

    second = make_node(data, journal_db)
    report = second.journal.recover(second.runtime)
    assert report.respawned == ["root/workers", "root/workers/p1", "root/workers/p2"]
    assert sorted(path for path, _ in report.not_restarted) == ["root/t1", "root/tmp1"]
    assert report.failed == []
    rt = second.runtime
    workers = next(c for c in rt.tree()["children"] if c["id"] == "workers")
    assert (workers["strategy"], workers["intensity"], workers["period_s"]) == ("rest_for_one", 7, 3.0)
    assert [c["id"] for c in rt.which_children("root/workers")] == ["p1", "p2"], "start order kept"
    p1 = rt.get_agent("p1")
    assert p1["config"] == {"greeting": "hi"} and p1["restart"] == "permanent"
    assert rt.ask("p1", "ping", timeout=5)["pong"] is True
    assert {a["id"] for a in rt.list_agents()} == {"p1", "p2"}
    assert recovery_events(rt.history()) == [
        ("recovered", "workers", "node restarted"),
        ("recovered", "p1", "node restarted"),
        ("recovered", "p2", "node restarted"),
        ("stopped", "t1", "not restarted (restart=transient, it was shut down normally) after the node restarted"),
        ("stopped", "tmp1", "not restarted (restart=temporary) after the node restarted"),
    ]
    assert second.journal.flush(10)
    assert {r["id"] for r in second.journal.registry("n1")} == {"root", "workers", "p1", "p2"}
    second.close()

    third = make_node(data, journal_db, recover=False)
    assert third.journal.recover(third.runtime).respawned == []
    assert third.runtime.list_agents() == []
    third.close()

    fourth = make_node(data, journal_db)  # what the node meant to run is still remembered
    assert fourth.journal.recover(fourth.runtime).respawned == ["root/workers", "root/workers/p1", "root/workers/p2"]


def test_static_children_and_unknown_kinds(tmp_path: Path, journal_db: str, make_node: NodeFactory) -> None:
    root = SupervisorSpec("root", intensity=100, children=())
    data = tmp_path / "node"
    first = make_node(data, journal_db, runtime={"root": root})
    first.runtime.spawn("echo", "e1")
    first.close()
    second = make_node(data, journal_db, runtime={"root": root})
    second.runtime.spawn("echo", "e1")  # the program started it again itself
    report = second.journal.recover(second.runtime)
    assert report.already_running == ["root/e1"] and report.respawned == []


class Greeter(Agent):
    kind = "greeter"

    @command("greet")
    def greet(self, name: str) -> dict[str, str]:
        return {"greeting": f"Hello, {name}!"}


def test_an_unregistered_kind_is_reported_kept_wanted_and_recovered_once_registered(
    tmp_path: Path, journal_db: str, make_node: NodeFactory
) -> None:
    data = tmp_path / "node"
    with_kind = {"kinds": {"greeter": Greeter}}
    first = make_node(data, journal_db, runtime=with_kind)
    first.runtime.spawn("greeter", "g1")
    first.runtime.add_supervisor(SupervisorSpec("team"))
    first.runtime.spawn("greeter", "g2", supervisor="root/team")
    first.runtime.spawn("echo", "e1")
    first.close()

    for run in ("second", "third"):  # a restart without the kind, twice: nothing is forgotten
        node = make_node(data, journal_db)
        rt = node.runtime
        report = node.journal.recover(rt)
        assert report.respawned == ["root/team", "root/e1"], run
        assert [(n.path, n.kind, n.kind_missing) for n in report.not_recovered] == [
            ("root/g1", "greeter", True), ("root/team/g2", "greeter", True)], run
        assert report.missing_kinds == ["greeter"] and rt.recovery is report
        assert {a["id"] for a in rt.list_agents()} == {"e1"}
        failed = rt.history(event_types=["recovery_failed"])
        assert [(e.agent_id, e.supervisor, e.kind, e.data["kind_missing"]) for e in failed] == [
            ("g1", "root", "greeter", True), ("g2", "root/team", "greeter", True)]
        assert all("kind 'greeter' is not registered" in (e.reason or "") for e in failed)
        state = health(rt)
        assert state["status"] == "degraded" and state["missing_kinds"] == ["greeter"]
        assert [n["id"] for n in state["not_recovered"]] == ["g1", "g2"]
        assert "g1, g2 (kind 'greeter' is not registered on this node)" in state["detail"]
        assert node.journal.flush(10)
        rows = {r["id"]: r for r in node.journal.registry("n1")}
        assert {(rows[a]["desired_state"], rows[a]["state"], rows[a]["last_event"]) for a in ("g1", "g2")} == {
            ("running", "not_recovered", "recovery_failed")}, "the registry keeps them wanted"
        node.close()

    fourth = make_node(data, journal_db, runtime=with_kind)
    rt = fourth.runtime
    report = fourth.journal.recover(rt)
    assert report.respawned == ["root/g1", "root/team", "root/e1", "root/team/g2"]
    assert report.not_recovered == [] and health(rt) == {"status": "ok", "recovered": 4}
    assert rt.ask("g2", "greet", {"name": "Ada"}, timeout=5) == {"greeting": "Hello, Ada!"}
    recovered = {e.agent_id: e.data["previous_state"] for e in rt.history(event_types=["recovered"])}
    assert recovered["g1"] == recovered["g2"] == "not_recovered"


def test_health_clears_as_agents_not_recovered_are_spawned_again(
    tmp_path: Path, journal_db: str, make_node: NodeFactory
) -> None:
    data = tmp_path / "node"
    first = make_node(data, journal_db, runtime={"kinds": {"greeter": Greeter}})
    first.runtime.spawn("greeter", "g1")
    first.runtime.spawn("greeter", "g2")
    first.close()
    second = make_node(data, journal_db)
    assert health(second.runtime)["status"] == "disabled", "before any recovery"
    second.journal.recover(second.runtime)
    second.runtime.register("greeter", Greeter)
    second.runtime.spawn("greeter", "g1")  # by hand
    state = health(second.runtime)
    assert state["status"] == "degraded" and [n["id"] for n in state["not_recovered"]] == ["g2"]
    second.runtime.spawn("greeter", "g2")
    assert health(second.runtime)["status"] == "ok"


CHILD = r"""
import json, sys
from mistersmith import AgentFailedError, Runtime, SupervisorSpec
from mistersmith.journal import Journal, JournalConfig, PoolConfig

journal = Journal.open(sys.argv[1], JournalConfig(database_url=sys.argv[2], pool=PoolConfig(min_size=1, max_size=2)))
rt = Runtime(node_id="victim", sinks=[journal.sink], root=SupervisorSpec("root", intensity=1_000_000))
rt.add_supervisor(SupervisorSpec("workers", intensity=1_000_000))
for i in range(5):
    rt.spawn("echo", f"p{i}", supervisor="root/workers")
rt.spawn("echo", "t0", supervisor="root/workers", restart="transient")
rt.spawn("echo", "tmp0", supervisor="root/workers", restart="temporary")
rt.spawn("echo", "gone", supervisor="root/workers")
rt.stop("gone")
print(json.dumps({"ready": True}), flush=True)
n = 0
while True:
    agent = f"p{n % 5}"
    try:
        rt.ask(agent, "fail", timeout=5)
    except AgentFailedError:
        pass
    rt.ask(agent, "ping", timeout=5)  # answered by the new incarnation: the restart was seen
    print(json.dumps({"agent": agent, "restart_count": rt.get_agent(agent)["restart_count"]}), flush=True)
    n += 1
"""


def test_kill_9_mid_load_loses_nothing_observed_and_recovers(
    tmp_path: Path, journal_db: str, make_node: NodeFactory
) -> None:
    data = tmp_path / "victim"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), journal_db], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    observed: dict[str, int] = {}
    try:
        assert child.stdout is not None
        assert json.loads(child.stdout.readline()) == {"ready": True}
        for _ in range(300):
            line = json.loads(child.stdout.readline())
            observed[line["agent"]] = line["restart_count"]
        child.send_signal(signal.SIGKILL)  # mid-load: it is crashing and restarting agents right now
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    node = make_node(data, journal_db, node_id="victim")
    report = node.journal.recover(node.runtime)
    with psycopg.connect(journal_db) as conn:
        restarts = {
            (agent, count) for agent, count in conn.execute(
                "SELECT agent_id, restart_count FROM supervision_events"
                " WHERE node_id = 'victim' AND event_type = 'restarted'"
            )
        }
        duplicates = conn.execute(
            "SELECT count(*) - count(DISTINCT event_id) FROM supervision_events"
        ).fetchone()
        stopped_gone = conn.execute(
            "SELECT count(*) FROM supervision_events WHERE agent_id = 'gone' AND event_type = 'stopped'"
        ).fetchone()
    for agent, count in observed.items():  # every restart anyone saw is journaled, with all before it
        assert {(agent, n) for n in range(1, count + 1)} <= restarts, agent
    assert duplicates == (0,)
    assert stopped_gone == (1,)
    assert sorted(report.respawned) == [
        "root/workers", "root/workers/p0", "root/workers/p1", "root/workers/p2", "root/workers/p3",
        "root/workers/p4", "root/workers/t0",
    ], "permanent agents, and the transient one (the node crashed), come back"
    assert [p for p, _ in report.not_restarted] == ["root/workers/tmp0"]
    for i in range(5):
        assert node.runtime.ask(f"p{i}", "ping", timeout=5)["pong"] is True
    assert "gone" not in {a["id"] for a in node.runtime.list_agents()}
