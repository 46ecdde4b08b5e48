"""A MisterSmith node on NATS: spawn and command agents as any NATS client would.

Starts the embedded nats-server (JetStream on) in a temporary directory, a
Runtime, the node's event-loop thread and a Bridge; then, as a NATS client:
spawns an ``echo`` agent through ``system.control.spawn``, commands it, watches
its status events through a crash and restart, and queues a task through JetStream.

Run it: ``python examples/nats_bridge.py``.
"""

from __future__ import annotations

import asyncio
import tempfile

import orjson
from nats.aio.msg import Msg

from mistersmith import Runtime
from mistersmith.bridge import AgentClient, Bridge, ConnectOptions, connect
from mistersmith.crossing import LoopThread
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import RemoteError


async def as_a_nats_client(url: str) -> None:
    nc, _ = await connect(ConnectOptions(servers=(url,)))
    client = AgentClient(nc, timeout_s=10)
    try:
        placed = await client.spawn("echo", "greeter")
        print("spawned", placed)
        print("echo ->", await client.request("greeter", "echo", {"hello": "world"}))

        events: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            events.put_nowait(msg.data)

        await nc.subscribe("agents.greeter.status.*", cb=on_event)
        await nc.flush()
        try:
            await client.request("greeter", "fail", {"message": "on purpose"})
        except RemoteError as exc:
            print("fail ->", exc.code)
        while True:
            event = orjson.loads(await asyncio.wait_for(events.get(), 10))
            print("status:", event["type"])
            if event["type"] == "restarted":
                break

        results: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_result(msg: Msg) -> None:
            results.put_nowait(msg.data)

        await nc.subscribe("tasks.t1.result", cb=on_result)
        task = {"task_id": "t1", "command": "echo", "payload": {"n": 42}}
        await nc.jetstream().publish("tasks.echo.queue.high", orjson.dumps(task), headers={"Nats-Msg-Id": "t1"})
        print("task t1 ->", orjson.loads(await asyncio.wait_for(results.get(), 10))["result"])
        print("list ->", [a["id"] for a in (await client.control("list"))["agents"]])
    finally:
        await nc.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedNats(data_dir) as server:
        runtime = Runtime(node_id="example-node")
        loop = LoopThread()
        try:
            nc, stats = loop.run(connect(ConnectOptions(servers=(server.url,))), 10)
            bridge = Bridge(runtime, nc, connection_stats=stats)
            loop.run(bridge.start(), 10)
            try:
                loop.run(bridge.tasks.serve("echo"), 10)  # this node's echo agents take echo tasks
                asyncio.run(as_a_nats_client(server.url))
            finally:
                loop.run(bridge.close(), 10)
                loop.run(nc.close(), 10)
        finally:
            loop.stop()
            runtime.close()


if __name__ == "__main__":
    main()
