"""Supervision events: the record, its dict form, the bus, sinks and subscriptions."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import WAIT_S, Worker, end_incarnation, running
from mistersmith import EVENT_TYPES, AgentFailedError, FakeClock, MemorySink, Runtime, SupervisionEvent, SupervisorSpec
from mistersmith.supervisors import EventBus

ARCHITECTURE_VOCABULARY = (
    "started", "stopped", "failed", "restarted", "restart_scheduled", "escalated",
    "intensity_exceeded", "shutdown_timeout", "paused", "resumed", "recovered",
    "recovery_failed", "state_restored", "fenced", "taken_over", "node_up", "node_down",
    "node_draining", "breaker_open",  # the second wave's, as each is added
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)

events = st.builds(
    SupervisionEvent,
    event_id=st.uuids(),
    seq=st.integers(1, 2**62),
    occurred_at=st.datetimes(timezones=st.just(UTC)),
    node_id=ids,
    supervisor=st.lists(ids, min_size=1, max_size=4).map("/".join),
    agent_id=st.none() | ids,
    kind=st.none() | ids,
    event_type=st.sampled_from(EVENT_TYPES),
    reason=st.none() | st.text(),
    restart_count=st.integers(0, 10_000),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    trace_id=st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
)


def test_vocabulary_is_the_architectures() -> None:
    assert EVENT_TYPES == ARCHITECTURE_VOCABULARY


@given(events)
def test_to_dict_from_dict_round_trip(event: SupervisionEvent) -> None:
    raw = event.to_dict()
    assert SupervisionEvent.from_dict(raw) == event
    # It survives JSON too (the wire and the journal).
    assert SupervisionEvent.from_dict(json.loads(json.dumps(raw))) == event


def test_to_dict_is_json_shaped() -> None:
    event = SupervisionEvent(
        event_id=uuid.UUID(int=1), seq=7, occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        node_id="n", supervisor="root/w", agent_id="a", kind="echo", event_type="failed",
        reason="boom", restart_count=2, data={"command": "x"},
    )
    assert event.to_dict() == {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "seq": 7,
        "occurred_at": "2026-01-02T03:04:05.000006+00:00",
        "node_id": "n",
        "supervisor": "root/w",
        "agent_id": "a",
        "kind": "echo",
        "event_type": "failed",
        "reason": "boom",
        "restart_count": 2,
        "data": {"command": "x"},
        "trace_id": None,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 8  # type: ignore[misc]


def test_bus_numbers_events_in_order_across_threads() -> None:
    bus = EventBus("node-a", first_seq=5)
    sink = MemorySink()
    bus.add_sink(sink)
    seen: list[int] = []
    bus.subscribe(lambda e: seen.append(e.seq))

    def emit_many() -> None:
        for _ in range(200):
            bus.emit("started", supervisor="root", agent_id="x")

    threads = [threading.Thread(target=emit_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    seqs = [e.seq for e in sink.events()]
    assert seqs == list(range(5, 805)) == seen
    assert len({e.event_id for e in sink.events()}) == 800
    assert {e.node_id for e in sink.events()} == {"node-a"}


def test_unknown_event_types_cannot_be_subscribed() -> None:
    with pytest.raises(ValueError, match="crashed"):
        EventBus("n").subscribe(event_types=["crashed"])


def test_subscription_filters_and_drops_the_oldest_when_full() -> None:
    bus = EventBus("n")
    sub = bus.subscribe(agent_id="a", event_types=["failed"], maxsize=2)
    for i in range(4):
        bus.emit("failed", supervisor="root", agent_id="a", reason=str(i))
        bus.emit("failed", supervisor="root", agent_id="b")
        bus.emit("started", supervisor="root", agent_id="a")
    assert sub.dropped == 2
    assert [sub.get(WAIT_S).reason for _ in range(2)] == ["2", "3"]
    with pytest.raises(TimeoutError):
        sub.get(0.01)
    sub.close()
    bus.emit("failed", supervisor="root", agent_id="a")
    assert sub.closed


def test_a_raising_callback_does_not_break_the_bus() -> None:
    bus = EventBus("n")
    sink = MemorySink()
    bus.add_sink(sink)
    got: list[SupervisionEvent] = []

    def bad(event: SupervisionEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(bad)
    bus.subscribe(got.append)
    bus.emit("started", supervisor="root")
    assert len(got) == 1 and len(sink.events()) == 1


def test_memory_sink_keeps_the_newest() -> None:
    bus = EventBus("n")
    sink = MemorySink(maxlen=3)
    bus.add_sink(sink)
    for i in range(5):
        bus.emit("started", supervisor="root", agent_id=f"a{i}")
    assert [e.agent_id for e in sink.events()] == ["a2", "a3", "a4"]
    assert [e.agent_id for e in sink.events(agent_id="a3")] == ["a3"]


class RecordingSink:
    """A custom sink, as the journal will be."""

    def __init__(self) -> None:
        self.written: list[SupervisionEvent] = []
        self.synced: list[SupervisionEvent] = []

    def write(self, event: SupervisionEvent) -> None:
        self.written.append(event)

    def sync(self, event: SupervisionEvent) -> None:
        self.synced.append(event)


def test_runtime_events_reach_plugged_sinks_with_full_fields(clock: FakeClock) -> None:
    sink = RecordingSink()
    with running(clock=clock, sinks=[sink], node_id="node-1", root=SupervisorSpec("root", intensity=5),
                 kinds={"worker": Worker}) as rt:
        agent = rt.spawn("worker", "w")

        def crash() -> None:
            with pytest.raises(AgentFailedError):
                rt.ask(agent, "exit", {"how": "crash"}, timeout=WAIT_S)

        end_incarnation(rt, agent, crash)
        mine = [e for e in sink.written if e.agent_id == "w"]
        assert [e.event_type for e in mine] == ["started", "failed", "restarted"]
        started, failed, restarted = mine
        assert started.supervisor == "root" and started.kind == "worker" and started.node_id == "node-1"
        assert started.data["restart"] == "permanent"
        assert failed.restart_count == 0 and restarted.restart_count == 1
        assert isinstance(started.occurred_at, datetime) and started.occurred_at.tzinfo is not None
        seqs = [e.seq for e in sink.written]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert sink.synced == sink.written  # each event was made durable, in order
        assert rt.history(agent_id="w") == mine
        assert all(e.event_type in EVENT_TYPES for e in rt.history())


def test_subscribe_wait_for_and_filters(runtime: Runtime) -> None:
    with runtime.subscribe(event_types=["paused", "resumed"]) as sub:
        agent = runtime.spawn("echo")
        runtime.ask(agent, "pause", timeout=WAIT_S)
        runtime.ask(agent, "resume", timeout=WAIT_S)
        event = sub.wait_for(lambda e: e.event_type == "resumed", WAIT_S)
        assert event.agent_id == agent
        with pytest.raises(TimeoutError):
            sub.wait_for(lambda e: True, 0.01)
    with pytest.raises(ValueError):
        runtime.subscribe(event_types=["nope"])


def test_history_filters(runtime: Runtime) -> None:
    a = runtime.spawn("echo")
    b = runtime.spawn("echo")
    runtime.ask(a, "pause", timeout=WAIT_S)
    assert [e.event_type for e in runtime.history(agent_id=a)] == ["started", "paused"]
    assert [e.agent_id for e in runtime.history(event_types=["started"]) if e.kind == "echo"] == [a, b]
    stats: dict[str, Any] = runtime.stats()
    assert stats["agents"] == 2
