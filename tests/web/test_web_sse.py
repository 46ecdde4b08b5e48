"""``GET /discoveries/stream``: many clients, filters, Last-Event-ID resume, the cap, keep-alive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from _web import Served, SseClient, call

from mistersmith.discovery import Discovery


def _share(served: Served, agent_id: str = "a1", kind: str = "insight", confidence: float = 0.8,
           content: str = "found it") -> int:
    result = call(served, "share_discovery", {"agent_id": agent_id, "agent_role": "scout", "discovery_type": kind,
                                              "content": content, "confidence": confidence})
    seq: int = result["structuredContent"]["discovery"]["seq"]
    return seq


def test_each_event_carries_the_whole_discovery_with_its_seq_as_id(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> dict[str, str]:
        client = await SseClient.open(served.url)
        assert client.status == 200
        assert client.headers["content-type"].startswith("text/event-stream")
        assert await client.comment() == "connected"
        seq = await asyncio.to_thread(_share, served, "a1", "pattern", 0.9, "the pattern")
        event = await client.event()
        client.close()
        assert event["id"] == str(seq)
        return event

    event = asyncio.run(main())
    assert event["event"] == "discovery"
    data = orjson.loads(event["data"])
    assert Discovery.from_dict(data).content == "the pattern"
    assert data["agent_id"] == "a1" and data["discovery_type"] == "pattern" and data["confidence"] == 0.9


def test_many_concurrent_clients_each_get_every_discovery_in_order(serve: Callable[..., Served]) -> None:
    clients_n, shares_n = 100, 5
    # every stream and the sharing requests come from 127.0.0.1: past the default per-client cap (64)
    served = serve(max_connections_per_client=clients_n + 1)

    async def main() -> list[list[int]]:
        clients = await asyncio.gather(*(SseClient.open(served.url) for _ in range(clients_n)))
        await asyncio.gather(*(c.comment() for c in clients))
        assert served.app.streams.active == clients_n
        sent = [await asyncio.to_thread(_share, served, f"a{i}") for i in range(shares_n)]

        async def read(client: SseClient) -> list[int]:
            return [int((await client.event())["id"]) for _ in range(shares_n)]

        got = await asyncio.gather(*(read(c) for c in clients))
        for c in clients:
            c.close()
        assert sent == list(range(1, shares_n + 1))
        return got

    got = asyncio.run(main())
    assert got == [list(range(1, shares_n + 1))] * clients_n


def test_filters_select_by_agent_type_confidence_and_exclude_self(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> dict[str, list[str]]:
        queries = {
            "agent": "?agent_id=a2",
            "types": "?types=anomaly,question",
            "confident": "?min_confidence=0.7",
            "others": "?agent_id=a1&exclude_self=true",
        }
        clients = {name: await SseClient.open(served.url, q) for name, q in queries.items()}
        await asyncio.gather(*(c.comment() for c in clients.values()))
        for agent, kind, confidence in [("a1", "anomaly", 0.9), ("a2", "insight", 0.5), ("a3", "question", 0.8),
                                        ("a1", "pattern", 0.2), ("a2", "anomaly", 0.95)]:
            await asyncio.to_thread(_share, served, agent, kind, confidence, f"{agent}/{kind}")
        marker = await asyncio.to_thread(_share, served, "a2", "question", 1.0, "end")
        assert marker == 6
        got: dict[str, list[str]] = {}
        for name, client in clients.items():
            contents = []
            while True:
                data = orjson.loads((await client.event())["data"])
                if data["seq"] == marker:
                    break
                contents.append(data["content"])
            got[name] = contents
            client.close()
        return got

    assert asyncio.run(main()) == {
        "agent": ["a2/insight", "a2/anomaly"],
        "types": ["a1/anomaly", "a3/question", "a2/anomaly"],
        "confident": ["a1/anomaly", "a3/question", "a2/anomaly"],
        "others": ["a2/insight", "a3/question", "a2/anomaly"],
    }


def test_last_event_id_resumes_with_no_gap(serve: Callable[..., Served]) -> None:
    served = serve()
    for i in range(10):
        _share(served, content=f"d{i}")

    async def main() -> tuple[list[int], list[int]]:
        client = await SseClient.open(served.url, headers={"last-event-id": "4"})
        backlog = [int((await client.event())["id"]) for _ in range(6)]
        await asyncio.to_thread(_share, served, "a1", "insight", 0.5, "live")
        live = [int((await client.event())["id"])]
        client.close()
        again = await SseClient.open(served.url, "?last_event_id=9")
        live.append(int((await again.event())["id"]))
        again.close()
        return backlog, live

    backlog, live = asyncio.run(main())
    assert backlog == [5, 6, 7, 8, 9, 10]
    assert live == [11, 10]


def test_resume_while_sharing_concurrently_misses_nothing_and_repeats_nothing(serve: Callable[..., Served]) -> None:
    served = serve()
    for i in range(3):
        _share(served, content=f"before{i}")

    async def main() -> list[int]:
        sharer = asyncio.create_task(asyncio.to_thread(lambda: [_share(served) for _ in range(20)]))
        client = await SseClient.open(served.url, headers={"last-event-id": "1"})
        ids = [int((await client.event())["id"]) for _ in range(22)]
        await sharer
        client.close()
        return ids

    assert asyncio.run(main()) == list(range(2, 24))


def test_the_cap_answers_503_with_retry_after(serve: Callable[..., Served]) -> None:
    served = serve(max_streams=3)

    async def main() -> None:
        open_ = [await SseClient.open(served.url) for _ in range(3)]
        await asyncio.gather(*(c.comment() for c in open_))
        refused = await SseClient.open(served.url)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "5"
        assert orjson.loads(await refused.body())["error"]["code"] == "too_many_streams"
        open_[0].close()
        # A slot frees once the server notices the disconnect.
        await asyncio.to_thread(served.run, served.app.streams.wait_active(2), 10.0)
        assert served.app.streams.active == 2
        again = await SseClient.open(served.url)
        assert again.status == 200
        for c in (*open_[1:], again):
            c.close()

    asyncio.run(main())
    stats = served.app.streams
    assert stats.rejected == 1


def test_keepalive_comments_arrive(serve: Callable[..., Served]) -> None:
    served = serve(keepalive_s=0.05)

    async def main() -> list[str]:
        client = await SseClient.open(served.url)
        seen = [await client.comment(), await client.comment(), await client.comment()]
        client.close()
        return seen

    assert asyncio.run(main()) == ["connected", "keepalive", "keepalive"]


def test_a_slow_client_is_cut_off_and_resumes_without_a_gap(serve: Callable[..., Served]) -> None:
    served = serve(hub_buffer=4)
    assert served.hub is not None

    async def main() -> list[int]:
        client = await SseClient.open(served.url)
        await client.comment()
        # The hub outruns this reader: share 50 on the node's loop in one go.
        async def burst() -> None:
            assert served.hub is not None
            for i in range(50):
                await served.hub.share(Discovery("a1", "scout", "insight", f"b{i}", 0.5))
        await asyncio.to_thread(served.run, burst())
        ids: list[int] = []
        try:
            while True:
                ids.append(int((await client.event())["id"]))
        except EOFError:
            pass
        client.close()
        resumed = await SseClient.open(served.url, headers={"last-event-id": str(ids[-1] if ids else 0)})
        while not ids or ids[-1] < 50:
            ids.append(int((await resumed.event())["id"]))
        resumed.close()
        return ids

    assert asyncio.run(main()) == list(range(1, 51))


def test_bad_filters_are_400_and_no_hub_is_503(serve: Callable[..., Served]) -> None:
    served = serve()
    no_hub = serve(hub=False)

    async def main() -> None:
        for query in ("?types=gossip", "?min_confidence=2", "?min_confidence=high", "?exclude_self=true",
                      "?agent_id=a.b", "?colour=red"):
            client = await SseClient.open(served.url, query)
            assert client.status == 400, query
            assert orjson.loads(await client.body())["error"]["code"] == "invalid_spec"
        bad_resume = await SseClient.open(served.url, headers={"last-event-id": "abc"})
        assert bad_resume.status == 400
        unavailable = await SseClient.open(no_hub.url)
        assert unavailable.status == 503

    asyncio.run(main())


def test_stopping_the_server_ends_open_streams(serve: Callable[..., Served]) -> None:
    served = serve()

    async def main() -> None:
        client = await SseClient.open(served.url)
        await client.comment()
        await asyncio.to_thread(served.run, served.server.stop(), 10.0)
        try:
            while True:
                await client.event(5.0)
        except (EOFError, asyncio.IncompleteReadError):
            pass
        client.close()

    asyncio.run(main())
    assert served.app.streams.active == 0
