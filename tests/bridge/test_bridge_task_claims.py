"""Only the worker that claimed a task settles it: forged results on tasks.{id}.result change nothing.

Two nodes share one real PostgreSQL (the tasks table) and one real
nats-server; node a serves the kind, node b only tracks. The forger is a
plain NATS connection that publishes on the task subjects (on a server
without permissions, as an external one may be). Every wait is on a
message, a flush or a condition with a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson
import pytest
from _bridge_helpers import WAIT_S, Inbox, client, connect_options, wait_until
from nats.aio.client import Client as NATS

from mistersmith import Agent, Runtime, command
from mistersmith.bridge import Bridge, TaskOptions, connect
from mistersmith.crossing import LoopThread
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.journal import PoolConfig
from mistersmith.journal.pool import open_pool
from mistersmith.journal.tasks import PgTaskStore

T = TypeVar("T")

FAST = TaskOptions(max_in_flight=1, max_deliver=3, ack_wait_s=5.0, backoff_s=(0.05,), idle_poll_s=0.2)

_gate = threading.Event()


class Gated(Agent):
    """Answers ``run`` once the test opens the gate."""

    kind = "gated"

    @command("run")
    def run(self, n: int) -> dict[str, Any]:
        if not _gate.wait(WAIT_S):
            raise RuntimeError("the gate was never opened")
        return {"n": n, "by": "the worker"}


class PgNode:
    """A Runtime, its loop, a NATS connection and a Bridge whose task store is PostgreSQL."""

    def __init__(self, url: str, conninfo: str, node_id: str, **runtime: Any) -> None:
        self.node_id = node_id
        self.rt = Runtime(node_id=node_id, **runtime)
        self.loop = LoopThread(name=f"mistersmith-loop-{node_id}")
        self.nc: NATS | None = None
        self.bridge: Bridge | None = None
        self.pool: Any = None
        try:
            self.pool = self.run(open_pool(conninfo, PoolConfig(min_size=1, max_size=3)))
            self.nc, stats = self.run(connect(connect_options(url, name=node_id)))
            self.bridge = Bridge(self.rt, self.nc, connection_stats=stats, task_options=FAST,
                                 task_store=PgTaskStore(self.pool))
            self.run(self.bridge.start())
        except BaseException:
            self.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return self.loop.run(coro, timeout_s)

    @property
    def b(self) -> Bridge:
        assert self.bridge is not None
        return self.bridge

    def close(self) -> None:
        try:
            if self.bridge is not None:
                self.run(self.bridge.close(), WAIT_S)
            if self.nc is not None:
                self.run(self.nc.close(), WAIT_S)
            if self.pool is not None:
                self.run(self.pool.close(), WAIT_S)
        finally:
            self.rt.close()
            self.loop.stop()


def _pair(url: str, conninfo: str) -> tuple[PgNode, PgNode]:
    worker = PgNode(url, conninfo, "claims-a", kinds={"gated": Gated})
    try:
        return worker, PgNode(url, conninfo, "claims-b")
    except BaseException:
        worker.close()
        raise


async def _forge(nc: NATS, task_id: str, result: Any) -> None:
    """What anyone who may publish on the task subjects could send."""
    await nc.publish(f"tasks.{task_id}.result", orjson.dumps(
        {"task_id": task_id, "ok": True, "result": result, "agent_id": "gated-1", "node": "claims-a", "attempt": 1}))
    await nc.publish(f"tasks.{task_id}.progress", orjson.dumps(
        {"task_id": task_id, "status": "dead", "error": {"code": "forged", "message": "not so"}}))
    await nc.publish(f"tasks.{task_id}.progress", orjson.dumps(
        {"task_id": task_id, "status": "done", "result": result}))
    await nc.flush()


def _logged(caplog: pytest.LogCaptureFixture, subject: str) -> int:
    """How many trackers logged that they ignored a message on ``subject``."""
    return sum(f"ignored {subject}:" in r.getMessage() for r in caplog.records)


def _rejected(*nodes: PgNode) -> int:
    return sum(n.b.task_tracker.results_rejected for n in nodes)


def test_a_forged_result_for_a_queued_task_is_ignored(nats_server: EmbeddedNats, journal_db: str) -> None:
    worker, tracker_node = _pair(nats_server.url, journal_db)
    try:
        tracker = tracker_node.b.task_tracker

        async def scenario() -> str:
            nc, _ = await client(nats_server.url)
            try:
                # No node serves "idle": the task stays queued (the Tasks port would refuse it; the queue takes it).
                queued = await tracker_node.b.tasks.submit("idle", {"n": 1}, timeout_s=5)
                task_id = str(queued["task_id"])
                await _forge(nc, task_id, {"stolen": True})
                # Each node's tracker rejects the result and the "done" progress (two each).
                await wait_until(lambda: _rejected(worker, tracker_node) == 4, poke=nc.flush)
                return task_id
            finally:
                await nc.close()

        task_id = tracker_node.run(scenario())
        for state in (tracker_node.run(tracker.get(task_id)), worker.run(worker.b.task_tracker.get(task_id))):
            assert state is not None and state["status"] == "queued" and "result" not in state
            assert "error" not in state
        assert tracker_node.b.counters.get("task_results_rejected") == 2
        assert tracker.status_of(task_id) == "queued"
    finally:
        tracker_node.close()
        worker.close()


def test_a_forged_result_for_a_running_task_is_ignored_and_the_workers_is_kept(
        nats_server: EmbeddedNats, journal_db: str, caplog: pytest.LogCaptureFixture) -> None:
    _gate.clear()
    worker, tracker_node = _pair(nats_server.url, journal_db)
    try:
        tracker = tracker_node.b.task_tracker

        async def serve() -> None:  # on the worker's own loop, as everything of a node
            await worker.rt.aspawn("gated", "gated-1")
            await worker.b.tasks.serve("gated")

        async def submit() -> str:
            return str((await tracker.submit(task_type="gated", payload={"n": 7}, agent_id=None,
                                             timeout_s=WAIT_S))["task_id"])

        worker.run(serve())
        task_id = tracker_node.run(submit())

        async def forge_while_running() -> dict[str, Any] | None:
            nc, _ = await client(nats_server.url)
            try:
                progress = await Inbox().subscribe(nc, f"tasks.{task_id}.progress")
                # "running" is published once the claim is committed; the agent waits at the gate.
                await wait_until(lambda: tracker.status_of(task_id) == "running", poke=nc.flush)
                await _forge(nc, task_id, {"stolen": True})
                await wait_until(lambda: _rejected(worker, tracker_node) == 4, poke=nc.flush)
                running = await tracker.get(task_id)
                results = await Inbox().subscribe(nc, f"tasks.{task_id}.result")
                _gate.set()
                genuine = orjson.loads((await results.next()).data)
                assert genuine["result"] == {"n": 7, "by": "the worker"}
                while orjson.loads((await progress.next()).data)["status"] != "done":
                    pass
                return running
            finally:
                await nc.close()

        running = tracker_node.run(forge_while_running())
        assert running is not None and running["status"] == "running" and "result" not in running
        assert running["node"] == "claims-a" and running["agent_id"] == "gated-1"

        async def after() -> None:
            nc, _ = await client(nats_server.url)
            try:
                # The worker's result is the one kept; a forged one after it changes nothing either.
                await wait_until(lambda: tracker.status_of(task_id) == "done", poke=nc.flush)
                await nc.publish(f"tasks.{task_id}.result", orjson.dumps(
                    {"task_id": task_id, "ok": True, "result": {"stolen": "late"}}))
                # Then a marker on the same subject pattern: each tracker handles its result subscription in
                # order, so once both reject the marker, the genuine result and the late forgery were handled.
                await nc.publish("tasks.marker-2.result", orjson.dumps({"task_id": "marker-2", "result": 0}))
                await wait_until(lambda: _logged(caplog, "tasks.marker-2.result") == 2, poke=nc.flush)
            finally:
                await nc.close()

        tracker_node.run(after())
        assert _rejected(worker, tracker_node) == 8, "two while running, one late, one marker: on each node"
        for state in (tracker_node.run(tracker.get(task_id)), worker.run(worker.b.task_tracker.get(task_id))):
            assert state is not None and state["status"] == "done"
            assert state["result"] == {"n": 7, "by": "the worker"} and state["node"] == "claims-a"
        assert worker.b.tasks.counters["done"] == 1
    finally:
        _gate.set()
        tracker_node.close()
        worker.close()


def test_a_redelivered_task_that_is_done_already_is_acked_not_run(
        nats_server: EmbeddedNats, journal_db: str) -> None:
    _gate.set()
    worker = PgNode(nats_server.url, journal_db, "claims-c", kinds={"gated": Gated})
    try:
        store = worker.b.tasks.store
        assert store is not None

        async def scenario() -> tuple[dict[str, Any] | None, int]:
            # As if an earlier delivery settled it and its ack was lost.
            assert await store.claim("settled-1", "token-0", {"status": "running", "kind": "gated",
                                                             "agent_id": "gated-0", "node": "claims-0"})
            assert await store.settle("settled-1", "token-0", {"status": "done", "result": {"first": True}})
            await worker.rt.aspawn("gated", "gated-2")
            await worker.b.tasks.serve("gated")
            await worker.b.tasks.submit("gated", {"n": 1}, task_id="settled-1")
            queue = worker.b.tasks
            await wait_until(lambda: queue.counters["skipped"] == 1, poke=worker.b.nc.flush)
            js = worker.b.nc.jetstream()
            unacked = [-1]

            async def ask_jetstream() -> None:  # the ack reaches the consumer a little after it is sent
                info = await js.consumer_info("MS_TASKS", "tasks-gated-normal")
                unacked[0] = (info.num_ack_pending or 0) + (info.num_pending or 0)

            await wait_until(lambda: unacked[0] == 0, poke=ask_jetstream)
            return await worker.b.task_tracker.get("settled-1"), unacked[0]

        state, unacked = worker.run(scenario())
        assert state is not None and state["status"] == "done" and state["result"] == {"first": True}
        assert worker.b.tasks.counters["done"] == 0 and unacked == 0
    finally:
        worker.close()
