"""A node for the bridge tests: a Runtime, its loop thread, a NATS connection and a Bridge.

Nothing here sleeps to synchronise: waits are on NATS round trips
(``flush``), on messages, or on conditions re-checked when something arrives,
each with a timeout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith import Runtime
from mistersmith.bridge import (
    AgentClient,
    Bridge,
    BridgeOptions,
    ConnectionStats,
    ConnectOptions,
    TaskOptions,
    connect,
)
from mistersmith.crossing import LoopThread
from mistersmith.ports import ClusterOps

T = TypeVar("T")

WAIT_S = 10.0
"""Upper bound of every wait; a healthy run never gets near it."""

FAST_RECONNECT = {"reconnect_base_s": 0.02, "reconnect_max_s": 0.2}


def connect_options(url: str, **overrides: Any) -> ConnectOptions:
    return ConnectOptions(servers=(url,), **{**FAST_RECONNECT, **overrides})


class BridgeNode:
    """A bare node on a NATS server (a Runtime, its loop thread, a Bridge; not ``mistersmith.node.Node``).

    ``run(coro)`` runs on its loop thread.
    """

    def __init__(self, url: str, *, node_id: str | None = None, options: BridgeOptions | None = None,
                 task_options: TaskOptions | None = None,
                 shutdown: Callable[[], Awaitable[None]] | None = None, cluster: ClusterOps | None = None,
                 **runtime: Any) -> None:
        self.node_id = node_id or f"n-{uuid.uuid4().hex[:8]}"
        self.url = url
        self.rt = Runtime(node_id=self.node_id, **runtime)
        self.loop = LoopThread(name=f"mistersmith-loop-{self.node_id}")
        self.nc: NATS | None = None
        self.bridge: Bridge | None = None
        try:
            self.nc, stats = self.run(connect(connect_options(url, name=self.node_id)))
            self.bridge = Bridge(self.rt, self.nc, options=options or BridgeOptions(), connection_stats=stats,
                                 task_options=task_options, shutdown=shutdown, cluster=cluster)
            self.run(self.bridge.start())
        except BaseException:
            self.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return self.loop.run(coro, timeout_s)

    def close(self) -> None:
        try:
            if self.bridge is not None:
                self.run(self.bridge.close(), WAIT_S)
            if self.nc is not None:
                self.run(self.nc.close(), WAIT_S)
        finally:
            self.rt.close()
            self.loop.stop()

    @property
    def stats(self) -> ConnectionStats:
        assert self.bridge is not None
        return self.bridge.connection_stats


async def client(url: str, **overrides: Any) -> tuple[NATS, AgentClient]:
    """A separate connection (as any NATS user would have), with its AgentClient."""
    nc, _ = await connect(connect_options(url, **overrides))
    return nc, AgentClient(nc, timeout_s=WAIT_S)


async def wait_until(predicate: Callable[[], bool], *, poke: Callable[[], Awaitable[Any]],
                     timeout_s: float = WAIT_S) -> None:
    """Re-check ``predicate`` after each ``poke`` until it holds; AssertionError after ``timeout_s``.

    ``poke`` is a round trip through what carries the change (``nc.flush`` for
    what arrives over NATS, an ask for what crosses from an agent's thread):
    the wait never spins on bare event-loop turns, and never sleeps.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await poke()


class Inbox:
    """Messages on a subject, queued; ``next()`` waits for one with a timeout."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def subscribe(self, nc: NATS, subject: str) -> Inbox:
        await nc.subscribe(subject, cb=self.queue.put)
        await nc.flush()
        return self

    async def next(self, timeout_s: float = WAIT_S) -> Msg:
        return await asyncio.wait_for(self.queue.get(), timeout_s)
