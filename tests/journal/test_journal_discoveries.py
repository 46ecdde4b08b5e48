"""Discoveries on one database shared by several nodes: every subscriber sees every one, in seq order.

NATS keeps each publisher's order but not a global one, so a node can hear of
another node's discovery after a later-numbered one. Real PostgreSQL; the NATS
deliveries are played in the order that breaks a naive hub.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from importlib import resources
from pathlib import Path

import psycopg

from mistersmith.discoveries import DiscoveryHub
from mistersmith.discovery import Discovery, DiscoveryFilter
from mistersmith.journal import PoolConfig
from mistersmith.journal.discoveries import PgDiscoveryStore
from mistersmith.journal.migrate import migrate
from mistersmith.journal.pool import open_pool

WAIT_S = 10.0


def found(agent: str, content: str) -> Discovery:
    return Discovery(agent_id=agent, agent_role="tester", discovery_type="insight", content=content, confidence=0.5)


def test_a_late_discovery_from_another_node_is_delivered_in_seq_order(journal_db: str) -> None:
    async def main() -> None:
        pool = await open_pool(journal_db, PoolConfig(min_size=1, max_size=3))
        try:
            a, b, c = (DiscoveryHub(store=PgDiscoveryStore(pool, node)) for node in ("node-a", "node-b", "node-c"))
            live = c.subscribe(DiscoveryFilter())
            d0 = await a.share(found("agent-a", "first"))
            assert await c.ingest(d0) is not None  # what NATS brings to node c
            d1 = await a.share(found("agent-a", "second"))
            d2 = await b.share(found("agent-b", "third"))
            assert d0.seq is not None and d1.seq is not None and d2.seq is not None and d0.seq < d1.seq < d2.seq
            assert await c.ingest(d2) is not None  # node b's message overtakes node a's
            assert await c.ingest(d1) is None, "already delivered from the store"
            got = [await live.next(WAIT_S) for _ in range(3)]
            assert [(d.id, d.seq) for d in got] == [(d.id, d.seq) for d in (d0, d1, d2)]
            assert c.stats()["total"] == 3 and c.stats()["last_seq"] == d2.seq
            live.close()

            fresh = DiscoveryHub(store=PgDiscoveryStore(pool, "node-d"))  # a node that starts now
            await fresh.start()
            assert fresh.stats()["last_seq"] == d2.seq
            watching = fresh.subscribe(DiscoveryFilter())
            d3 = await a.share(found("agent-a", "fourth"))
            d4 = await b.share(found("agent-b", "fifth"))
            assert await fresh.ingest(d4) is not None  # the very first it hears of overtook another
            assert await fresh.ingest(d3) is None
            assert [(await watching.next(WAIT_S)).id for _ in range(2)] == [d3.id, d4.id]
            watching.close()
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_nodes_discovery_keeps_its_source_and_a_forged_copy_overwrites_nothing(journal_db: str) -> None:
    async def main() -> None:
        pool = await open_pool(journal_db, PoolConfig(min_size=1, max_size=3))
        try:
            a, c = (DiscoveryHub(store=PgDiscoveryStore(pool, node)) for node in ("node-a", "node-c"))
            await c.start()
            live = c.subscribe(DiscoveryFilter())
            genuine = await a.share(found("agent-a", "the real finding"))
            assert genuine.source == "node:node-a"
            # What arrives at node c over NATS may say anything: another body under the same id, a source.
            forged = replace(genuine, content="a forged finding", agent_id="mallory", source="node:node-x", seq=None)
            delivered = await c.ingest(forged)
            assert delivered == genuine, "the stored row is delivered, not the message"
            assert await live.next(WAIT_S) == genuine
            assert await c.ingest(replace(forged, content="again")) is None
            # A message no node made: stored as heard by node c.
            heard = await c.ingest(found("outsider", "from a NATS client"))
            assert heard is not None and heard.source == "nats:node-c"
            assert (await live.next(WAIT_S)).source == "nats:node-c"
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT id, agent_id, content, source, node_id FROM discoveries ORDER BY seq")
                rows = await cur.fetchall()
            assert rows == [(genuine.id, "agent-a", "the real finding", "node:node-a", "node-a"),
                            (heard.id, "outsider", "from a NATS client", "nats:node-c", "node-c")]
            assert [d.source for d in await c.query(DiscoveryFilter())] == ["node:node-a", "nats:node-c"]
            live.close()
        finally:
            await pool.close()

    asyncio.run(main())


def test_rows_stored_before_sources_were_recorded_say_unknown(fresh_db: str, tmp_path: Path) -> None:
    shipped = resources.files("mistersmith.migrations")
    before = tmp_path / "before"
    before.mkdir()
    for name in ("001_supervision_journal.sql", "002_discoveries_and_tasks.sql"):
        (before / name).write_bytes(shipped.joinpath(name).read_bytes())
    migrate(fresh_db, before)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("INSERT INTO discoveries (id, agent_id, agent_role, discovery_type, content, confidence, "
                     "occurred_at, node_id) VALUES ('old-1', 'a1', 'r', 'insight', 'c', 0.5, now(), 'n0')")
        conn.execute("INSERT INTO tasks (task_id, state) VALUES ('old-task', 'queued')")
    applied = migrate(fresh_db)
    assert applied[0].filename == "003_discovery_source_and_task_claims.sql"
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT source FROM discoveries").fetchall() == [("unknown",)]
        assert conn.execute("SELECT claim_token FROM tasks").fetchall() == [(None,)]
        nullable = conn.execute("SELECT is_nullable FROM information_schema.columns "
                                "WHERE table_name = 'discoveries' AND column_name = 'source'").fetchone()
        assert nullable == ("NO",)

    async def read() -> Discovery | None:
        pool = await open_pool(fresh_db, PoolConfig(min_size=1, max_size=1))
        try:
            return await PgDiscoveryStore(pool, "n1").get("old-1")
        finally:
            await pool.close()

    old = asyncio.run(read())
    assert old is not None and old.source == "unknown" and old.to_dict()["source"] == "unknown"
