"""Replay: filters, bounds, sync and async, server-side batches, and follow mode's hand-over."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest

from mistersmith import AgentFailedError, SupervisorSpec
from mistersmith.errors import SpecError
from mistersmith.journal import Journal
from mistersmith.supervisors import EventBus, SupervisionEvent

if TYPE_CHECKING:
    from conftest_pg import JournalNode


def scenario(node: JournalNode) -> list[SupervisionEvent]:
    """Two supervisors, three agents, two crashes, a pause and a stop; all shipped."""
    rt = node.runtime
    rt.add_supervisor(SupervisorSpec("workers", intensity=50))
    rt.add_supervisor(SupervisorSpec("others", intensity=50))
    rt.spawn("echo", "a1", supervisor="root/workers")
    rt.spawn("echo", "a2", supervisor="root/workers")
    rt.spawn("echo", "b1", supervisor="root/others")
    for _ in range(2):
        with pytest.raises(AgentFailedError):
            rt.ask("a1", "fail", timeout=5)
        rt.ask("a1", "ping", timeout=5)
    rt.ask("b1", "pause", timeout=5)
    rt.stop("a2")
    assert node.journal.flush(10)
    return rt.history()


def ids(events: object) -> list[object]:
    return [e.event_id for e in events]  # type: ignore[attr-defined]


def test_filters_and_bounds(node: JournalNode) -> None:
    history = scenario(node)
    journal = node.journal
    everything = list(journal.replay())
    assert ids(everything) == ids(history)
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    assert ids(journal.replay(agent_id="a1")) == ids(e for e in history if e.agent_id == "a1")
    assert ids(journal.replay(supervisor="root/others")) == ids(e for e in history if e.supervisor == "root/others")
    types = ("failed", "restarted")
    assert ids(journal.replay(event_types=types)) == ids(e for e in history if e.event_type in types)
    assert ids(journal.replay(agent_id="a1", event_types=["failed"])) == ids(
        e for e in history if e.agent_id == "a1" and e.event_type == "failed"
    )
    assert list(journal.replay(node_id="other-node")) == []

    third, sixth = everything[2], everything[5]
    assert ids(journal.replay(since=third.seq, until=sixth.seq)) == ids(everything[2:6]), "seq bounds are inclusive"
    assert ids(journal.replay(since=third.occurred_at, until=sixth.occurred_at)) == ids(everything[2:6])
    assert ids(journal.replay(since=everything[-1].occurred_at + timedelta(seconds=1))) == []
    restarted = [e for e in everything if e.event_type == "restarted"]
    assert [e.restart_count for e in restarted] == [1, 2]
    assert restarted[0].data["restart"] == "permanent", "spec data comes back from jsonb"


def test_server_side_batches_return_everything(node: JournalNode) -> None:
    history = scenario(node)
    assert ids(node.journal.replay(itersize=3)) == ids(history)


def test_bad_arguments_are_refused_eagerly(journal: Journal) -> None:
    with pytest.raises(SpecError, match="since"):
        journal.replay(since="yesterday")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="aware"):
        journal.replay(until=datetime(2026, 1, 1))
    with pytest.raises(SpecError, match="event_types"):
        journal.replay(event_types=["exploded"])


def test_async_iteration_on_any_loop(node: JournalNode) -> None:
    history = scenario(node)

    async def collect(**filters: object) -> list[SupervisionEvent]:
        return [e async for e in node.journal.replay(**filters)]  # type: ignore[arg-type]

    assert ids(asyncio.run(collect())) == ids(history)
    assert ids(asyncio.run(collect(agent_id="b1"))) == ids(e for e in history if e.agent_id == "b1")
    # on the journal's own loop the pool serves it
    on_loop = node.journal.loop.run(collect(event_types=["paused"]), 10)
    assert [e.agent_id for e in on_loop] == ["b1"]


def emit_many(bus: EventBus, prefix: str, n: int) -> list[SupervisionEvent]:
    return [bus.emit("started", supervisor="root", agent_id=f"{prefix}{i}", kind="echo") for i in range(n)]


def test_follow_hands_over_to_live_events_without_gap_or_duplicate(journal: Journal) -> None:
    bus = EventBus("n-follow")
    bus.add_sink(journal.sink)
    emitted = emit_many(bus, "h", 50)
    assert journal.flush(10)
    total = 50 + 400
    received: list[SupervisionEvent] = []
    got_all = threading.Event()
    follower_started = threading.Event()
    replay = journal.replay(follow=True, itersize=7, poll_s=0.5)

    def follow() -> None:
        follower_started.set()
        for event in replay:
            received.append(event)
            if len(received) == total:
                got_all.set()
                return

    thread = threading.Thread(target=follow, name="follower")
    thread.start()
    try:
        assert follower_started.wait(5)
        # live events race the history read: some land while it runs, some after
        emitted += emit_many(bus, "l", 400)
        assert got_all.wait(20), f"received {len(received)} of {total}"
    finally:
        replay.close()
        thread.join(10)
    assert ids(received) == ids(emitted)
    seqs = [e.seq for e in received]
    assert seqs == sorted(set(seqs))
    with psycopg.connect(journal.conninfo) as conn:
        journal_ids = [r[0] for r in conn.execute("SELECT event_id FROM supervision_events ORDER BY seq")]
    assert journal_ids == ids(received)


def test_follow_stops_at_until_seq(journal: Journal) -> None:
    bus = EventBus("n-until")
    bus.add_sink(journal.sink)
    emit_many(bus, "a", 5)
    assert journal.flush(10)
    first = next(iter(journal.replay()))
    target = first.seq + 7
    done = threading.Event()
    received: list[SupervisionEvent] = []

    def follow() -> None:
        received.extend(journal.replay(follow=True, until=target, poll_s=0.2))
        done.set()

    thread = threading.Thread(target=follow, name="follower")
    thread.start()
    emit_many(bus, "b", 5)
    assert done.wait(20)
    thread.join(5)
    assert [e.seq for e in received] == list(range(first.seq, target + 1))


def test_async_follow_receives_live_events(journal: Journal) -> None:
    bus = EventBus("n-afollow")
    bus.add_sink(journal.sink)
    emit_many(bus, "h", 3)
    assert journal.flush(10)

    async def main() -> list[SupervisionEvent]:
        replay = journal.replay(follow=True, poll_s=0.2)
        out: list[SupervisionEvent] = []
        async for event in replay:
            out.append(event)
            if len(out) == 3:
                await asyncio.get_running_loop().run_in_executor(None, emit_many, bus, "l", 3)
            if len(out) == 6:
                break
        return out

    received = asyncio.run(asyncio.wait_for(main(), 20))
    assert [e.agent_id for e in received] == ["h0", "h1", "h2", "l0", "l1", "l2"]


def test_follow_until_a_past_datetime_ends(journal: Journal) -> None:
    bus = EventBus("n-past")
    bus.add_sink(journal.sink)
    emit_many(bus, "a", 3)
    assert journal.flush(10)
    received = list(journal.replay(follow=True, until=datetime.now(UTC), poll_s=0.2))
    assert [e.agent_id for e in received] == ["a0", "a1", "a2"]


def test_aclose_after_break_returns_the_pooled_connection(node: JournalNode) -> None:
    scenario(node)

    async def first_two() -> tuple[list[str | None], int]:
        replay = node.journal.replay()
        got = []
        async for event in replay:
            got.append(event.agent_id)
            if len(got) == 2:
                break
        await replay.aclose()
        stats = node.journal.pool.get_stats()
        return got, stats.get("pool_available", 0) - stats.get("returns_bad", 0)

    got, available = node.journal.loop.run(first_two(), 10)
    assert got == ["root", "workers"]
    assert available >= 1, "the connection went back to the pool"
