"""Discoveries on one database shared by several nodes: every subscriber sees every one, in seq order.

NATS keeps each publisher's order but not a global one, so a node can hear of
another node's discovery after a later-numbered one. Real PostgreSQL; the NATS
deliveries are played in the order that breaks a naive hub.
"""

from __future__ import annotations

import asyncio

from mistersmith.discoveries import DiscoveryHub
from mistersmith.discovery import Discovery, DiscoveryFilter
from mistersmith.journal import PoolConfig
from mistersmith.journal.discoveries import PgDiscoveryStore
from mistersmith.journal.pool import open_pool

pytest_plugins = ["conftest_pg"]

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
