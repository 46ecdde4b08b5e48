"""The durable writer: write-ahead, group commit, exactly once, PostgreSQL outages."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from mistersmith import AgentFailedError, SupervisorSpec
from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal import Journal
from mistersmith.journal.codec import encode_line
from mistersmith.supervisors import EventBus, SupervisionEvent

if TYPE_CHECKING:
    from conftest_pg import JournalNode, NodeFactory


def journal_rows(conninfo: str) -> list[tuple[uuid.UUID, str, int]]:
    with psycopg.connect(conninfo) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT event_id, node_id, node_seq FROM supervision_events ORDER BY seq"
        )]


def crash(node: JournalNode, agent: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(AgentFailedError):
            node.runtime.ask(agent, "fail", timeout=5)
        assert node.runtime.ask(agent, "ping", timeout=5)["pong"] is True


def test_every_event_lands_once_in_order(node: JournalNode) -> None:
    rt = node.runtime
    rt.add_supervisor(SupervisorSpec("workers", intensity=50))
    agents = [rt.spawn("echo", f"a{i}", supervisor="root/workers") for i in range(5)]
    crash(node, "a1", 3)
    rt.stop("a4")
    assert node.journal.flush(10)
    rows = journal_rows(node.journal.conninfo)
    history = rt.history()
    assert [r[0] for r in rows] == [e.event_id for e in history], "journal order is emission order"
    assert [r[2] for r in rows] == [e.seq for e in history]
    assert {r[1] for r in rows} == {"n1"}
    assert len(agents) == 5
    stats = node.journal.stats()
    assert stats["writer"]["events_shipped"] == len(history)
    assert stats["writer"]["batches"] < len(history) or len(history) < 3
    assert stats["spool"]["backlog_events"] == 0 and stats["writer"]["pg_connected"]


def test_event_is_on_disk_before_emit_returns(journal: Journal) -> None:
    bus = EventBus("n-wal")
    bus.add_sink(journal.sink)
    seen_durable: list[bool] = []

    class Witness:
        """A later sink: by the time its sync runs, the journal's must be done."""

        def write(self, event: SupervisionEvent) -> None:
            return None

        def sync(self, event: SupervisionEvent) -> None:
            data = b"".join(p.read_bytes() for p in sorted(journal.spool.directory.glob("*.spool")))
            seen_durable.append(event.event_id.hex.encode() in data)

    bus.add_sink(Witness())
    events = [bus.emit("started", supervisor="root", agent_id=f"w{i}", kind="echo") for i in range(20)]
    assert seen_durable == [True] * 20
    assert journal.flush(10)
    assert {r[0] for r in journal_rows(journal.conninfo)} == {e.event_id for e in events}


def test_postgres_stopped_mid_run_then_every_event_once(
    own_pg: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_node: NodeFactory
) -> None:
    caplog.set_level(logging.INFO, logger="mistersmith.journal")
    node = make_node(tmp_path / "node", own_pg.conninfo())
    try:
        rt, journal = node.runtime, node.journal
        rt.add_supervisor(SupervisorSpec("workers", intensity=100))
        rt.spawn("echo", "a1", supervisor="root/workers")
        assert journal.flush(10)
        own_pg.stop()
        crash(node, "a1", 5)  # supervision goes on without PostgreSQL
        rt.spawn("echo", "a2", supervisor="root/workers")
        assert journal.shipper.wait_for(lambda s: not s.connected and s.outage.outages == 1, 10)
        stats = journal.stats()
        assert stats["writer"]["outage_since"] is not None
        assert stats["spool"]["backlog_events"] == 11  # 5 x (failed + restarted) + started a2
        assert not journal.flush(0.2), "nothing reaches PostgreSQL while it is down"
        own_pg.start()
        assert journal.flush(20)
        crash(node, "a2", 1)
        assert journal.flush(10)
        history = rt.history()
        rows = journal_rows(journal.conninfo)
        assert [r[0] for r in rows] == [e.event_id for e in history], "each event once, in order"
        stats = journal.stats()
        assert stats["writer"]["pg_connected"] and stats["spool"]["backlog_events"] == 0
        assert stats["writer"]["outage_s"] == 0.0
    finally:
        node.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("PostgreSQL unreachable" in m for m in messages)
    assert any("reachable again" in m for m in messages)


def test_reshipping_after_a_lost_checkpoint_inserts_nothing_twice(
    tmp_path: Path, journal_db: str, make_node: NodeFactory, make_journal: Any
) -> None:
    node = make_node(tmp_path / "node", journal_db)
    node.runtime.spawn("echo", "a1")
    crash(node, "a1", 2)
    node.close()
    before = journal_rows(journal_db)
    (tmp_path / "node" / "journal" / "shipped.pos").unlink()  # as if we died right after a commit
    journal = make_journal(tmp_path / "node", journal_db)
    assert journal.flush(10)
    assert journal.stats()["writer"]["duplicates_skipped"] == len(before)
    assert journal.stats()["writer"]["events_shipped"] == 0
    journal.close()
    assert journal_rows(journal_db) == before
    # ... and draws no seq for them: the next event follows the last one, with no gap
    again = make_node(tmp_path / "again", journal_db)
    again.runtime.spawn("echo", "a2")
    again.close()
    seqs = _seqs(journal_db)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq has a gap"


def _seqs(conninfo: str) -> list[int]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM supervision_events ORDER BY seq")]


def test_a_line_postgresql_rejects_is_set_aside_and_the_rest_ships(journal: Journal) -> None:
    bus = EventBus("n-poison")
    bus.add_sink(journal.sink)
    good = [bus.emit("started", supervisor="root", agent_id=f"g{i}", kind="echo") for i in range(3)]
    poison = SupervisionEvent(
        event_id=uuid.uuid4(), seq=99, occurred_at=good[0].occurred_at, node_id="n-poison",
        supervisor="root", agent_id="bad", kind="echo", event_type="failed", restart_count=2**40,
    )
    assert journal.spool.wait_durable(journal.spool.append(encode_line(poison)), 5)
    assert journal.spool.wait_durable(journal.spool.append(b"not a journal line\n"), 5)
    good += [bus.emit("stopped", supervisor="root", agent_id=f"g{i}", kind="echo") for i in range(3)]
    assert journal.flush(10)
    assert [r[0] for r in journal_rows(journal.conninfo)] == [e.event_id for e in good]
    assert journal.stats()["writer"]["rejected"] == 2
    kept = (journal.spool.directory / "rejected.log").read_text()
    assert poison.event_id.hex in kept and "not a journal line" in kept  # the line as spooled


def test_the_registry_fold_is_redone_when_another_writer_took_seqs(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer folds a batch while the COPY runs, with the seqs it expects; a writer that skips the
    append lock can take numbers in between, and then the registry must hold the real seqs."""
    from psycopg import sql

    from mistersmith.journal import insert as insert_module

    bus = EventBus("n-refold")
    bus.add_sink(journal.sink)
    bus.emit("started", supervisor="root", agent_id="a0", kind="echo", data={"restart": "permanent"})
    assert journal.flush(10)  # the first batch after a start goes the careful way; the next ones straight
    # From now on, each batch "loses" one number to someone else, right after the writer read the sequence.
    monkeypatch.setattr(insert_module, "_SEQ_NOW", sql.SQL(
        "SELECT nextval(pg_get_serial_sequence('supervision_events', 'seq')) - 1"
    ))
    bus.emit("started", supervisor="root", agent_id="a1", kind="echo", data={"restart": "permanent"})
    bus.emit("failed", supervisor="root", agent_id="a1", kind="echo", reason="boom")
    bus.emit("restarted", supervisor="root", agent_id="a1", kind="echo", restart_count=1,
             data={"restart": "permanent"})
    bus.emit("stopped", supervisor="root", agent_id="a0", kind="echo", reason="shutdown: stopped on request")
    assert journal.flush(10)
    with psycopg.connect(journal.conninfo) as conn:
        seqs = {a: s for a, s in conn.execute(
            "SELECT agent_id, max(seq) FROM supervision_events WHERE node_id = 'n-refold' GROUP BY agent_id")}
        all_seqs = [r[0] for r in conn.execute("SELECT seq FROM supervision_events ORDER BY seq")]
        registry = {r[0]: r[1:] for r in conn.execute(
            "SELECT agent_id, last_seq, state, incarnation FROM agents WHERE node_id = 'n-refold'")}
    assert all_seqs != list(range(all_seqs[0], all_seqs[0] + len(all_seqs))), "a number was taken in between"
    assert registry == {"a1": (seqs["a1"], "running", 1)}, "a0 stopped on purpose; a1 at its real last seq"


def test_two_nodes_share_one_database(tmp_path: Path, journal_db: str) -> None:
    """Two nodes' journals write to one PostgreSQL at once: every event once, each node's own order kept,
    both nodes' registries."""
    import threading

    from conftest_pg import journal_config

    journals = [Journal.open(tmp_path / name, journal_config(journal_db)) for name in ("node-a", "node-b")]
    try:
        buses = [EventBus(name) for name in ("n-a", "n-b")]
        for bus, journal in zip(buses, journals):
            bus.add_sink(journal.sink)
        start = threading.Barrier(4)

        def emit(bus: EventBus, agent: str) -> None:
            start.wait(10)
            bus.emit("started", supervisor="root", agent_id=agent, kind="echo", data={"restart": "permanent"})
            for i in range(1, 150):
                bus.emit("restarted", supervisor="root", agent_id=agent, kind="echo", restart_count=i,
                         data={"restart": "permanent"})

        threads = [threading.Thread(target=emit, args=(bus, f"{bus.node_id}-w{t}"), name=f"emit-{bus.node_id}-{t}")
                   for bus in buses for t in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        assert all(journal.flush(30) for journal in journals)
        with psycopg.connect(journal_db) as conn:
            rows = conn.execute("SELECT node_id, node_seq FROM supervision_events ORDER BY seq").fetchall()
            registry = conn.execute("SELECT node_id, agent_id, incarnation FROM agents ORDER BY 1, 2").fetchall()
        assert len(rows) == 4 * 150
        for node in ("n-a", "n-b"):
            mine = [r[1] for r in rows if r[0] == node]
            assert mine == sorted(mine) and len(set(mine)) == 300, f"{node}: its events once, in its own order"
        assert registry == [(n, f"{n}-w{t}", 149) for n in ("n-a", "n-b") for t in range(2)]
    finally:
        for journal in journals:
            journal.close()
