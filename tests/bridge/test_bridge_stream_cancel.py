"""Streamed progress, cancellation and deadlines over NATS (real nats-server, plain nats-py clients).

- ``MS-Stream: 1``: each progress item arrives on the reply inbox as it is
  produced (``MS-Kind: progress``), then the result (``MS-Kind: result``);
  without the header only the result is sent;
- ``agents.<id>.control.cancel`` with ``{"correlation_id"}`` cancels a queued or
  a running command: its caller gets ``cancelled`` and the agent lives on;
- a request whose ``MS-Deadline`` has passed is never started.
"""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from _bridge_helpers import WAIT_S, BridgeNode, Inbox, client, wait_until

from mistersmith import Agent, command
from mistersmith.envelope import Envelope, RemoteError
from mistersmith.headers import DEADLINE


class Writer(Agent):
    """Streams tokens; waits forever on demand; counts what it ran."""

    kind = "writer"
    started = threading.Event()

    def on_start(self) -> None:
        self.ran = 0

    @command
    async def write(self, words: int) -> dict[str, int]:
        for i in range(words):
            self.progress(f"token-{i}", done=i + 1, total=words)
            await asyncio.sleep(0)
        return {"words": words}

    @command
    def count(self) -> int:
        self.ran += 1
        return self.ran

    @command
    async def forever(self) -> None:
        type(self).started.set()
        await asyncio.Event().wait()


def spawn_writer(node: BridgeNode, agent_id: str) -> str:
    Writer.started = threading.Event()
    assert node.bridge is not None
    return node.run(node.bridge.aspawn(Writer, agent_id))


def test_a_streaming_request_gets_each_progress_item_then_the_result(node: BridgeNode) -> None:
    agent = spawn_writer(node, "w1")

    async def scenario() -> None:
        nc, _ = await client(node.url)
        try:
            inbox = nc.new_inbox()
            got = await Inbox().subscribe(nc, inbox)
            await nc.publish(f"agents.{agent}.commands.write", b'{"words": 5}', reply=inbox,
                             headers={"MS-Stream": "1"})
            kinds, bodies = [], []
            while True:
                msg = await got.next()
                kinds.append(msg.headers["MS-Kind"])
                bodies.append(orjson.loads(msg.data))
                if msg.headers["MS-Kind"] == "result":
                    break
            assert kinds == ["progress"] * 5 + ["result"]
            assert bodies[0] == {"data": "token-0", "done": 1, "total": 5}
            assert [b["data"] for b in bodies[:5]] == [f"token-{i}" for i in range(5)]
            assert bodies[-1] == {"ok": True, "result": {"words": 5}}
            # without the header: only the result, as before
            reply = await nc.request(f"agents.{agent}.commands.write", b'{"words": 3}', timeout=WAIT_S)
            assert orjson.loads(reply.data) == {"ok": True, "result": {"words": 3}}
        finally:
            await nc.close()

    node.run(scenario())


def test_agent_client_stream_yields_progress_then_the_result(node: BridgeNode) -> None:
    agent = spawn_writer(node, "w2")

    async def scenario() -> None:
        nc, ms = await client(node.url)
        try:
            stream = await ms.stream(agent, "write", {"words": 4})
            items = [item async for item in stream]
            assert [i["data"] for i in items] == ["token-0", "token-1", "token-2", "token-3"]
            assert stream.result == {"words": 4}
            with pytest.raises(RemoteError) as missing:
                await (await ms.stream("nobody-here", "write", {"words": 1})).wait()
            assert missing.value.code == "unknown_agent"
        finally:
            await nc.close()

    node.run(scenario())


def test_cancel_over_nats_of_a_running_and_of_a_queued_command(node: BridgeNode) -> None:
    agent = spawn_writer(node, "w3")

    async def scenario() -> None:
        nc, ms = await client(node.url)
        try:
            running = asyncio.ensure_future(ms.request(agent, "forever", timeout_s=WAIT_S, correlation_id="run-1"))
            await asyncio.to_thread(Writer.started.wait, WAIT_S)
            env = Envelope(type="command", payload={}, correlation_id="queued-1")
            queued = asyncio.ensure_future(nc.request(f"agents.{agent}.commands.count", env.encode(), timeout=WAIT_S))
            tracked = node.rt.system.agents[agent].context.mailbox.tracked
            await wait_until(lambda: "queued-1" in tracked, poke=nc.flush)  # in the mailbox, behind `forever`
            # the queued one first: it leaves the mailbox and never runs
            reply = await nc.request(f"agents.{agent}.control.cancel", b'{"correlation_id": "queued-1"}',
                                     timeout=WAIT_S)
            assert orjson.loads(reply.data)["result"]["cancelled"] is True
            answer = orjson.loads((await queued).data)
            assert answer["ok"] is False and answer["error"]["code"] == "cancelled"
            assert await ms.cancel(agent, "run-1") is True
            with pytest.raises(RemoteError) as cancelled:
                await running
            assert cancelled.value.code == "cancelled"
            assert await ms.cancel(agent, "run-1") is False  # nothing left with that id
            assert await ms.request(agent, "count") == 1  # the agent lives, and `count` ran only now
            bad = await nc.request(f"agents.{agent}.control.cancel", b'{}', timeout=WAIT_S)
            assert orjson.loads(bad.data)["error"]["code"] == "invalid_payload"
        finally:
            await nc.close()

    node.run(scenario())
    assert node.rt.get_agent(agent)["restart_count"] == 0


def test_a_request_whose_deadline_has_passed_is_never_started(node: BridgeNode) -> None:
    agent = spawn_writer(node, "w4")

    async def scenario() -> None:
        nc, ms = await client(node.url)
        try:
            past = str(int((time.time() - 1.0) * 1000))
            reply = await nc.request(f"agents.{agent}.commands.count", b"{}", timeout=WAIT_S,
                                     headers={DEADLINE: past})
            answer = orjson.loads(reply.data)
            assert answer["ok"] is False and answer["error"]["code"] == "timeout"
            assert "deadline" in answer["error"]["message"]
            assert await ms.request(agent, "count") == 1  # the late one never ran
        finally:
            await nc.close()

    node.run(scenario())
    assert node.bridge is not None and node.bridge.stats()["expired_in"] == 1
