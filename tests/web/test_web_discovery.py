"""The discovery model (pure) and the DiscoveryHub (in-process, storage-less and with a store)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from mistersmith.discoveries import DiscoveryHub
from mistersmith.discovery import DISCOVERY_TYPES, Discovery, DiscoveryFilter
from mistersmith.errors import SpecError
from mistersmith.ports import Discoveries


def _d(agent: str = "a1", kind: str = "insight", confidence: float = 0.5, **extra: Any) -> Discovery:
    return Discovery(agent, "scout", kind, f"{agent} saw {kind}", confidence, **extra)


def test_round_trip_through_the_wire_form() -> None:
    d = _d(related_to="abc").with_seq(7)
    assert Discovery.from_dict(d.to_dict()) == d
    assert d.subject == "discoveries.a1.insight"
    assert Discovery.from_dict({"agent_id": "a", "agent_role": "r", "discovery_type": "question",
                                "content": "why?", "confidence": 1}).confidence == 1.0


@pytest.mark.parametrize(("fields", "key"), [
    ({"agent_id": "a.b"}, "agent_id"),
    ({"agent_id": ""}, "agent_id"),
    ({"agent_role": ""}, "agent_role"),
    ({"discovery_type": "rumour"}, "discovery_type"),
    ({"content": " "}, "content"),
    ({"content": "x" * 20_000}, "content"),
    ({"confidence": 1.01}, "confidence"),
    ({"confidence": -0.1}, "confidence"),
    ({"confidence": float("nan")}, "confidence"),
    ({"confidence": True}, "confidence"),
    ({"confidence": "high"}, "confidence"),
    ({"related_to": "a b"}, "related_to"),
    ({"seq": 0}, "seq"),
    ({"occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
])
def test_each_bad_field_is_named(fields: dict[str, Any], key: str) -> None:
    raw: dict[str, Any] = {"agent_id": "a1", "agent_role": "r", "discovery_type": "insight", "content": "c",
                           "confidence": 0.5, **fields}
    with pytest.raises(SpecError) as bad:
        Discovery(**raw)
    assert bad.value.key == key


def test_from_dict_refuses_unknown_and_missing_keys_and_bad_times() -> None:
    base = _d().to_dict()
    with pytest.raises(SpecError) as unknown:
        Discovery.from_dict({**base, "colour": "red"})
    assert unknown.value.key == "colour"
    del base["content"]
    with pytest.raises(SpecError) as missing:
        Discovery.from_dict(base)
    assert missing.value.key == "content"
    with pytest.raises(SpecError):
        Discovery.from_dict({**_d().to_dict(), "occurred_at": "yesterday"})
    assert Discovery.from_dict({**_d().to_dict(), "occurred_at": "2026-01-01T00:00:00+00:00"}).occurred_at == \
        datetime(2026, 1, 1, tzinfo=UTC)


def test_filters() -> None:
    assert DiscoveryFilter().matches(_d())
    assert not DiscoveryFilter(agent_id="a2").matches(_d())
    assert DiscoveryFilter(agent_id="a2", exclude_self=True).matches(_d())
    assert not DiscoveryFilter(agent_id="a1", exclude_self=True).matches(_d())
    assert not DiscoveryFilter(types=frozenset({"pattern"})).matches(_d())
    assert not DiscoveryFilter(min_confidence=0.6).matches(_d(confidence=0.5))
    assert DiscoveryFilter(min_confidence=0.5).matches(_d(confidence=0.5))
    for bad in ({"types": frozenset({"rumour"})}, {"types": "insight"}, {"min_confidence": 2},
                {"exclude_self": True}, {"agent_id": "x y"}):
        with pytest.raises(SpecError):
            DiscoveryFilter(**bad)
    assert set(DISCOVERY_TYPES) == {"pattern", "anomaly", "connection", "solution", "question", "insight"}


def test_the_hub_implements_the_port() -> None:
    async def main() -> None:
        assert isinstance(DiscoveryHub(), Discoveries)

    asyncio.run(main())


def test_storage_less_hub_numbers_keeps_and_queries() -> None:
    async def main() -> None:
        hub = DiscoveryHub(keep=3)
        stored = [await hub.share(_d(f"a{i}")) for i in range(5)]
        assert [d.seq for d in stored] == [1, 2, 3, 4, 5]
        assert [d.seq for d in await hub.query(DiscoveryFilter())] == [3, 4, 5]  # only `keep` are kept
        assert await hub.get(stored[0].id) is None and await hub.get(stored[4].id) == stored[4]
        assert [d.seq for d in await hub.query(DiscoveryFilter(), after_seq=3, limit=1)] == [4]
        assert hub.stats()["total"] == 5 and hub.stats()["by_agent"]["a0"] == 1
        with pytest.raises(SpecError):
            await hub.query(DiscoveryFilter(), limit=0)

    asyncio.run(main())


class _Store:
    """An in-memory stand-in for the journal's table, to pin the hub's use of the port."""

    def __init__(self) -> None:
        self.rows: list[Discovery] = []

    async def persist(self, discovery: Discovery) -> Discovery:
        for row in self.rows:
            if row.id == discovery.id:
                return row  # the first one stays, whatever the second says
        self.rows.append(discovery.with_seq(100 + len(self.rows)))
        return self.rows[-1]

    async def load(self, flt: DiscoveryFilter, *, after_seq: int, limit: int) -> list[Discovery]:
        return [r for r in self.rows if r.seq is not None and r.seq > after_seq and flt.matches(r)][:limit]

    async def get(self, discovery_id: str) -> Discovery | None:
        return next((r for r in self.rows if r.id == discovery_id), None)


def test_a_hub_with_a_store_and_a_publisher() -> None:
    async def main() -> None:
        store = _Store()
        published: list[Discovery] = []

        async def publish(d: Discovery) -> None:
            published.append(d)

        hub = DiscoveryHub(store=store, publish=publish, keep=1)
        first = await hub.share(_d("a1"))
        second = await hub.share(_d("a2"))
        assert (first.seq, second.seq) == (100, 101)
        assert published == [first, second]
        assert await hub.get(first.id) == first  # from the store: the memory keeps only one
        assert [d.seq for d in await hub.query(DiscoveryFilter(agent_id="a2"))] == [101]
        # Ingested from NATS: stored and delivered, not republished; an echo of ours is dropped.
        assert await hub.ingest(second) is None
        foreign = await hub.ingest(_d("a9"))
        assert foreign is not None and foreign.seq == 102 and len(published) == 2

    asyncio.run(main())


def test_a_failing_publisher_is_counted_not_raised() -> None:
    async def main() -> None:
        async def publish(d: Discovery) -> None:
            raise ConnectionError("nats down")

        hub = DiscoveryHub(publish=publish)
        stored = await hub.share(_d())
        assert stored.seq == 1 and hub.publish_errors == 1

    asyncio.run(main())


def test_subscriptions_resume_follow_and_overflow() -> None:
    async def main() -> None:
        hub = DiscoveryHub(buffer_per_subscriber=2)
        for i in range(3):
            await hub.share(_d(f"a{i}"))
        resumed = hub.subscribe(DiscoveryFilter(), after_seq=1)
        live = hub.subscribe(DiscoveryFilter(types=frozenset({"anomaly"})))
        await hub.share(_d("a3", "anomaly"))
        assert [(await resumed.next(1)).seq for _ in range(3)] == [2, 3, 4]
        assert (await live.next(1)).seq == 4
        for i in range(3):
            await hub.share(_d(f"b{i}", "anomaly"))
        assert live.overflowed and live.closed  # three behind with room for two
        assert [d.seq async for d in live] == [5, 6]  # what it held is still read, then it ends
        assert resumed.overflowed  # it was not read either
        assert hub.stats()["subscribers"] == 0
        fresh = hub.subscribe(DiscoveryFilter())
        assert hub.stats()["subscribers"] == 1
        fresh.close()
        with pytest.raises(StopAsyncIteration):
            await fresh.__anext__()
        hub.subscribe(DiscoveryFilter())
        hub.close()
        assert hub.stats()["subscribers"] == 0
        with pytest.raises(SpecError):
            hub.subscribe(DiscoveryFilter(), after_seq=-1)

    asyncio.run(main())


# -- sources: who vouches for a discovery ---------------------------------------------------


def test_the_source_round_trips_and_stays_off_the_nats_wire() -> None:
    d = _d().with_seq(3).with_source("node:n1")
    assert d.to_dict()["source"] == "node:n1" and Discovery.from_dict(d.to_dict()) == d
    assert "source" not in d.to_wire() and Discovery.from_dict(d.to_wire()).source == "unknown"
    old = {k: v for k, v in d.to_dict().items() if k != "source"}  # what a node of an older release sends
    assert Discovery.from_dict(old).source == "unknown"
    for bad in ("node:", "nats:a b", "agent:x", "", None):
        with pytest.raises(SpecError) as refused:
            _d(source=bad)
        assert refused.value.key == "source"


def test_the_hub_sets_the_source_whatever_the_discovery_says() -> None:
    async def main() -> None:
        hub = DiscoveryHub(node_id="n1")
        shared = await hub.share(_d("a1", source="nats:elsewhere"))
        assert shared.source == "node:n1"
        heard = await hub.ingest(_d("a2", source="node:n1"))  # a NATS message claiming to be this node's
        assert heard is not None and heard.source == "nats:n1"
        assert DiscoveryHub(store=_Store()).node_id == "local"  # no node id anywhere: "local"

    asyncio.run(main())


def test_an_id_is_taken_once() -> None:
    async def main() -> None:
        store = _Store()
        published: list[Discovery] = []

        async def publish(d: Discovery) -> None:
            published.append(d)

        hub = DiscoveryHub(store=store, publish=publish, keep=1, node_id="n1")
        live = hub.subscribe(DiscoveryFilter())
        first = await hub.share(_d("a1", id="taken"))
        assert await hub.share(_d("a1", id="taken", occurred_at=first.occurred_at)) == first  # the same again
        with pytest.raises(SpecError) as refused:
            await hub.share(_d("a1", id="taken", confidence=0.9))
        assert refused.value.key == "id"
        await hub.share(_d("a2"))  # pushes "taken" out of the hub's memory (keep=1)
        forged = _d("mallory", "anomaly", id="taken")
        assert await hub.ingest(forged) is None  # stored before and delivered: nothing changes
        assert await hub.get("taken") == first and store.rows[0] == first
        assert [(await live.next(1)).id for _ in range(2)] == ["taken", published[1].id]
        assert len(published) == 2 and hub.stats()["total"] == 2

    asyncio.run(main())


def test_a_time_far_ahead_is_refused() -> None:
    async def main() -> None:
        hub = DiscoveryHub()
        ahead = datetime(3000, 1, 1, tzinfo=UTC)
        for call in (hub.share, hub.ingest):
            with pytest.raises(SpecError) as refused:
                await call(_d(occurred_at=ahead))
            assert refused.value.key == "occurred_at"
        assert hub.stats()["total"] == 0
        past = await hub.ingest(_d(occurred_at=datetime(1970, 1, 1, tzinfo=UTC)))  # unverifiable, kept as given
        assert past is not None and past.occurred_at.year == 1970

    asyncio.run(main())
