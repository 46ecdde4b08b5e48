"""``GET /events/stream``: supervision events live, filters, resume with Last-Event-ID, the feed's limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from _web import Served, SseClient, http

from mistersmith import Runtime
from mistersmith.actors import Agent, command
from mistersmith.timelines import MemoryTimeline
from mistersmith.web.event_stream import EventFeed, EventFilter

PATH = "/events/stream"


class Crashy(Agent):
    @command
    def crash(self) -> None:
        raise RuntimeError("boom")


def _open(served: Served, query: str = "", headers: dict[str, str] | None = None) -> Any:
    return SseClient.open(served.url, query, {**served.auth(), **(headers or {})}, path=PATH)


async def _events(client: SseClient, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        raw = await client.event()
        data = orjson.loads(raw["data"])
        assert raw["id"] == str(data["seq"]) and raw["event"] == "supervision"
        out.append(data)
    return out


def test_a_spawn_arrives_live_with_its_seq_as_id(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> list[dict[str, Any]]:
        client = await _open(served)
        assert client.status == 200 and client.headers["content-type"].startswith("text/event-stream")
        assert await client.comment() == "connected"
        await asyncio.to_thread(served.runtime.spawn, "echo", "e1")
        got = await _events(client, 1)
        client.close()
        return got

    (event,) = asyncio.run(main())
    assert event["event_type"] == "started" and event["agent_id"] == "e1"
    assert event["node_id"] == served.runtime.node_id


def test_last_event_id_resumes_after_that_seq_with_no_gap_and_nothing_twice(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.register("crashy", Crashy)
    served.runtime.spawn("echo", "e1")
    served.runtime.spawn("crashy", "c1")
    first = served.runtime.history()[0].seq
    expected = [e.seq for e in served.runtime.history() if e.seq > first]

    async def main() -> list[int]:
        client = await _open(served, headers={"last-event-id": str(first)})
        got = [e["seq"] for e in await _events(client, len(expected))]
        await asyncio.to_thread(served.runtime.spawn, "echo", "e2")  # and then live, after the backlog
        (live,) = await _events(client, 1)
        client.close()
        assert live["agent_id"] == "e2"
        return got + [live["seq"]]

    got = asyncio.run(main())
    assert got[:-1] == expected and got == sorted(set(got))


def test_filters_select_by_agent_and_type(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.register("crashy", Crashy)

    async def main() -> dict[str, list[tuple[str, str]]]:
        queries = {"agent": "?agent_id=c1", "types": "?types=failed,restarted", "node": "?node=elsewhere&types=started"}
        clients = {k: await _open(served, q) for k, q in queries.items()}
        await asyncio.gather(*(c.comment() for c in clients.values()))
        await asyncio.to_thread(served.runtime.spawn, "echo", "e1")
        await asyncio.to_thread(served.runtime.spawn, "crashy", "c1")
        with pytest.raises(Exception):
            await served.runtime.aask("c1", "crash", timeout=5.0)
        agent = await _events(clients["agent"], 2)  # started, failed (then its restart)
        types = await _events(clients["types"], 1)
        for c in clients.values():
            c.close()
        return {"agent": [(e["agent_id"], e["event_type"]) for e in agent],
                "types": [(e["agent_id"], e["event_type"]) for e in types]}

    got = asyncio.run(main())
    assert got["agent"] == [("c1", "started"), ("c1", "failed")]
    assert got["types"] == [("c1", "failed")]


@pytest.mark.parametrize(("query", "key"), [("?types=exploded", "types"), ("?colour=red", "colour"),
                                            ("?last_event_id=abc", "Last-Event-ID")])
def test_a_bad_query_is_a_400_that_names_the_key(serve: Callable[..., Served], query: str, key: str) -> None:
    served = serve()
    reply = http(served.url, "GET", PATH + query)
    assert reply.status == 400
    assert key in reply.json()["error"]["message"]


def test_it_needs_the_token_like_every_route(serve: Callable[..., Served]) -> None:
    served = serve(api_token="t" * 32)
    assert http(served.url, "GET", PATH).status == 401
    assert http(served.url, "GET", PATH, headers={"cookie": "ms_console=" + "t" * 32}).status == 401  # not /ui


def test_streams_are_capped_and_share_one_feed(serve: Callable[..., Served]) -> None:
    served = serve(max_streams=3)

    async def main() -> tuple[int, int]:
        clients = [await _open(served) for _ in range(3)]
        await asyncio.gather(*(c.comment() for c in clients))
        refused = await _open(served)
        status = refused.status
        refused.close()
        subscribers = served.app.events.feed.subscribers
        for c in clients:
            c.close()
        return status, subscribers

    status, subscribers = asyncio.run(main())
    assert status == 503 and subscribers == 3


def test_a_subscriber_that_falls_behind_is_ended_and_resumes_from_the_timeline(real_runtime: Runtime) -> None:
    for i in range(3):
        real_runtime.spawn("echo", f"e{i}")
    kept = [e.to_dict() for e in real_runtime.history()]

    async def main() -> tuple[bool, list[int]]:
        feed = EventFeed(MemoryTimeline(real_runtime), buffer=2)
        slow = feed.subscribe(EventFilter(), None)
        await feed.started()
        for event in kept[1:]:  # three at once, before the reader reads any
            slow.offer(event)
        overflowed = slow.overflowed and slow.closed
        again = feed.subscribe(EventFilter(), kept[0]["seq"])
        got = []
        async for event in again:
            got.append(event["seq"])
            if len(got) == len(kept) - 1:
                again.close()
        await feed.aclose()
        return overflowed, got

    overflowed, got = asyncio.run(main())
    assert overflowed
    assert got == [e["seq"] for e in kept[1:]]
