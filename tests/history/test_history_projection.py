"""The projection (pure): how events fold into child records and desired states."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from mistersmith.history.projection import Projection
from mistersmith.supervisors import SupervisionEvent

AGENT_SPEC = {"restart": "permanent", "config": {"x": 1}, "shutdown_s": 5.0}
SUP_SPEC = {"restart": "permanent", "strategy": "one_for_one", "intensity": 1, "period_s": 5.0}


class Feed:
    """Builds events with increasing seq and feeds them to a projection."""

    def __init__(self) -> None:
        self.projection = Projection()
        self.seq = itertools.count(1)

    def __call__(self, event_type: str, supervisor: str, agent_id: str | None, kind: str | None = "echo",
                 reason: str | None = None, restart_count: int = 0, data: dict[str, Any] | None = None,
                 node_id: str = "n1") -> None:
        self.projection.apply(SupervisionEvent(
            event_id=uuid.uuid4(), seq=next(self.seq), occurred_at=datetime.now(UTC), node_id=node_id,
            supervisor=supervisor, agent_id=agent_id, kind=kind, event_type=event_type, reason=reason,
            restart_count=restart_count, data=data or {},
        ))

    def start_node(self) -> None:
        self("started", "", "root", "supervisor", data=SUP_SPEC)

    def spawn(self, agent_id: str, supervisor: str = "root", restart: str = "permanent") -> None:
        self("started", supervisor, agent_id, data=AGENT_SPEC | {"restart": restart})

    def add_sup(self, sup_id: str, parent: str = "root") -> None:
        self("started", parent, sup_id, "supervisor", data=SUP_SPEC)

    def states(self) -> dict[str, tuple[str, str]]:
        return {r.path: (r.state, r.desired_state) for r in self.projection.records.values()}


def test_start_crash_restart_pause() -> None:
    feed = Feed()
    feed.start_node()
    feed.spawn("a1")
    feed("failed", "root", "a1", reason="boom")
    assert feed.states()["root/a1"] == ("failed", "running")
    feed("restarted", "root", "a1", restart_count=1, data=AGENT_SPEC)
    feed("paused", "root", "a1")
    record = feed.projection.records[("n1", "root", "a1")]
    assert (record.state, record.incarnation, record.config, record.restart) == ("paused", 1, {"x": 1}, "permanent")
    feed("resumed", "root", "a1")
    assert feed.states()["root/a1"] == ("running", "running")


def test_stopped_on_purpose_is_forgotten_and_reported_as_removed() -> None:
    feed = Feed()
    feed.start_node()
    feed.spawn("a1")
    feed.projection.take_changes()
    feed("stopped", "root", "a1", reason="shutdown: stopped on request")
    assert "root/a1" not in feed.states()
    changed, removed = feed.projection.take_changes()
    assert changed == [] and removed == [("n1", "root", "a1")]


def test_node_shutdown_keeps_the_wish_to_run() -> None:
    feed = Feed()
    feed.start_node()
    feed.spawn("a1")
    feed.spawn("t1", restart="transient")
    feed("stopped", "root", "a1", reason="shutdown: supervisor shutting down")
    feed("stopped", "root", "t1", reason="shutdown: supervisor shutting down")
    assert feed.states()["root/a1"] == ("stopped", "running")
    assert feed.states()["root/t1"] == ("stopped", "running")


def test_normal_exit_depends_on_restart_type() -> None:
    feed = Feed()
    feed.start_node()
    feed.spawn("p1")
    feed.spawn("t1", restart="transient")
    feed("stopped", "root", "p1", reason="normal")
    feed("stopped", "root", "t1", reason="normal")
    assert feed.states()["root/p1"] == ("stopped", "running")
    assert "root/t1" not in feed.states()
    feed.spawn("t2", restart="transient")
    feed("failed", "root", "t2", reason="boom")
    feed("stopped", "root", "t2", reason="not restarted (restart=temporary)")
    assert "root/t2" not in feed.states()


def test_supervisor_stopped_on_purpose_takes_its_children() -> None:
    feed = Feed()
    feed.start_node()
    feed.add_sup("workers")
    feed.spawn("a1", "root/workers")
    feed.add_sup("inner", "root/workers")
    feed.spawn("a2", "root/workers/inner")
    feed.spawn("b1")
    feed("stopped", "root/workers/inner", "a2", reason="shutdown: supervisor shutting down")
    feed("stopped", "root/workers", "inner", "supervisor", reason="shutdown: supervisor shutting down")
    feed("stopped", "root/workers", "a1", reason="shutdown: supervisor shutting down")
    feed("stopped", "root", "workers", "supervisor", reason="shutdown: stopped on request")
    assert set(feed.states()) == {"root", "root/b1"}


def test_supervisor_restart_loses_children_that_were_there_before() -> None:
    feed = Feed()
    feed.start_node()
    feed.add_sup("workers")
    feed.spawn("static1", "root/workers")
    feed.spawn("dynamic1", "root/workers")
    # escalation: children stopped, the supervisor gives up, its parent restarts it
    feed("stopped", "root/workers", "dynamic1", reason="shutdown: restart intensity exceeded")
    feed("stopped", "root/workers", "static1", reason="shutdown: restart intensity exceeded")
    feed("intensity_exceeded", "root/workers", None, "supervisor", reason="too many")
    feed("escalated", "root/workers", None, "supervisor", reason="too many")
    assert feed.states()["root/workers"] == ("failed", "running")
    feed.spawn("static1", "root/workers")  # static children start before the supervisor reports
    feed("restarted", "root", "workers", "supervisor", restart_count=1, data=SUP_SPEC)
    states = feed.states()
    assert states["root/workers"] == ("running", "running")
    assert states["root/workers/static1"] == ("running", "running")
    assert "root/workers/dynamic1" not in states


def test_a_new_node_run_does_not_lose_children() -> None:
    feed = Feed()
    feed.start_node()
    feed.add_sup("workers")
    feed.spawn("dynamic1", "root/workers")
    feed("stopped", "root/workers", "dynamic1", reason="shutdown: supervisor shutting down")
    feed("stopped", "root", "workers", "supervisor", reason="shutdown: supervisor shutting down")
    feed.start_node()  # the node comes back; recovery will decide
    feed.add_sup("workers")
    assert feed.states()["root/workers/dynamic1"] == ("stopped", "running")


def test_nodes_do_not_mix() -> None:
    feed = Feed()
    feed.start_node()
    feed("started", "", "root", "supervisor", data=SUP_SPEC, node_id="n2")
    feed("started", "root", "a1", data=AGENT_SPEC, node_id="n2")
    feed("stopped", "root", "a1", reason="shutdown: stopped on request", node_id="n1")  # unknown on n1: ignored
    snapshot = feed.projection.snapshot()
    assert snapshot.nodes() == ["n1", "n2"]
    assert snapshot.agent("a1").node_id == "n2"
    assert snapshot.tree("n2")["children"][0]["id"] == "a1"
    assert snapshot.tree("n1")["children"] == []
