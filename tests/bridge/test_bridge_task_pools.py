"""Task pools (``task_agents``) and which kinds are served (``task_streams``), on a real nats-server.

A pool lends each task one agent of its own (``task-{kind}-...``, temporary, under ``root/tasks``);
a kind is served, for every node on the bus, once a worker made its durable consumer.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson
import pytest
from _bridge_helpers import WAIT_S, Inbox, BridgeNode, client, wait_until

from mistersmith import Agent, command
from mistersmith.bridge import AgentPool, TaskOptions, UnservedKindError, serve_pools
from mistersmith.bridge.task_agents import SUPERVISOR_PATH
from mistersmith.bridge.task_streams import served_kinds
from mistersmith.embedded.nats import EmbeddedNats

FAST = TaskOptions(max_in_flight=2, max_deliver=3, ack_wait_s=2.0, backoff_s=(0.05,), idle_poll_s=0.2)

_crashes: Counter[str] = Counter()
_crashes_lock = threading.Lock()


class Worker(Agent):
    """``run`` answers with who ran it; ``crash_once`` crashes its agent at the key's first delivery."""

    kind = "worker"

    @command("run")
    def run(self, n: int) -> dict[str, Any]:
        return {"n": n, "by": self.agent_id}

    @command("crash_once")
    def crash_once(self, key: str) -> dict[str, Any]:
        with _crashes_lock:
            _crashes[key] += 1
            first = _crashes[key] == 1
        if first:
            raise RuntimeError("the first delivery crashes its agent")
        return {"key": key, "by": self.agent_id}


class NeedsConfig(Agent):
    """Refuses to start without a ``colour``: a pool cannot run it."""

    kind = "picky"

    @classmethod
    def check_config(cls, config: Any, child: str | None = None) -> None:
        from mistersmith.errors import SpecError

        if "colour" not in config:
            raise SpecError(child, "config.colour", None, "give a colour")


async def _results(inbox: Inbox, n: int) -> list[dict[str, Any]]:
    return [orjson.loads((await inbox.next()).data) for _ in range(n)]


def test_a_pool_runs_each_task_on_its_own_agents_never_on_others_of_the_kind(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"worker": Worker, "picky": NeedsConfig})
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        async def scenario() -> tuple[dict[str, AgentPool], list[dict[str, Any]], list[dict[str, Any]]]:
            await node.rt.aspawn("worker", "worker-by-hand")
            pools = await serve_pools(tasks, {"worker": Worker, "picky": NeedsConfig})
            nc, _ = await client(node.url)
            try:
                inbox = await Inbox().subscribe(nc, "tasks.*.result")
                for n in range(6):
                    await tasks.submit("worker", {"n": n}, task_id=f"pooled-{n}")
                return pools, await _results(inbox, 6), node.rt.which_children(SUPERVISOR_PATH)
            finally:
                await nc.close()

        pools, results, children = node.run(scenario())
        assert list(pools) == ["worker"], "picky needs a config no task gives: not served"
        pool = pools["worker"]
        ran_on = {r["result"]["by"] for r in results}
        assert sorted(r["result"]["n"] for r in results) == list(range(6))
        assert {r["agent_id"] for r in results} == ran_on and "worker-by-hand" not in ran_on
        assert all(a.startswith("task-worker-") for a in ran_on)
        assert ran_on <= set(pool.agents()) and 1 <= pool.spawned == len(pool.agents()) <= FAST.max_in_flight
        assert {c["id"] for c in children} == set(pool.agents())
        assert {c["restart"] for c in children} == {"temporary"}
    finally:
        node.close()


def test_an_agent_its_task_crashed_leaves_the_pool_and_the_retry_runs_on_a_new_one(
        nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"worker": Worker})
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        async def scenario() -> tuple[AgentPool, dict[str, Any], list[str]]:
            pool = AgentPool(node.rt, "worker", 1)
            await tasks.serve("worker", agents=pool)
            nc, _ = await client(node.url)
            try:
                result = await Inbox().subscribe(nc, "tasks.crashy.result")
                progress = await Inbox().subscribe(nc, "tasks.crashy.progress")
                await tasks.submit("worker", {"key": "crashy"}, command="crash_once", task_id="crashy")
                done = orjson.loads((await result.next()).data)
                agents = []
                while (seen := orjson.loads((await progress.next()).data))["status"] != "done":
                    if seen["status"] == "running":
                        agents.append(seen["agent_id"])
                return pool, done, agents
            finally:
                await nc.close()

        pool, done, agents = node.run(scenario())
        assert done["attempt"] == 2 and len(agents) == 2 and agents[0] != agents[1]
        assert done["agent_id"] == agents[1] and pool.spawned == 2
        assert pool.agents() == [agents[1]], "the crashed (temporary) agent is gone, not lent again"
        hosted = {a["id"] for a in node.rt.list_agents()}
        assert agents[0] not in hosted and agents[1] in hosted
    finally:
        node.close()


def test_an_agent_whose_task_timed_out_is_stopped_and_leaves_the_pool(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST)
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        def pool_agents() -> set[str]:
            return {str(a["id"]) for a in node.rt.list_agents() if str(a["id"]).startswith("task-echo-")}

        async def scenario() -> tuple[AgentPool, dict[str, Any]]:
            pool = AgentPool(node.rt, "echo", 2)
            await tasks.serve("echo", agents=pool)
            nc, _ = await client(node.url)
            try:
                dead = await Inbox().subscribe(nc, "tasks.echo.dead")
                await tasks.submit("echo", {"seconds": 60}, command="hang", task_id="hangs", timeout_s=0.3)
                letter = orjson.loads((await dead.next()).data)
                await wait_until(lambda: not pool_agents(), poke=nc.flush)  # the last one is stopped too
                return pool, letter
            finally:
                await nc.close()

        pool, letter = node.run(scenario())
        assert letter["task_id"] == "hangs" and letter["error"]["code"] == "timeout"
        assert letter["deliveries"] == FAST.max_deliver == pool.spawned, "each attempt on a fresh agent"
        assert pool.agents() == []
    finally:
        node.close()


def test_a_kind_another_node_serves_is_accepted_and_one_nobody_serves_is_refused(
        nats_server: EmbeddedNats) -> None:
    worker = BridgeNode(nats_server.url, task_options=FAST, kinds={"worker": Worker})
    try:
        submitter = BridgeNode(nats_server.url, task_options=FAST)  # runs no worker kind
    except BaseException:
        worker.close()
        raise
    try:
        assert worker.bridge is not None and submitter.bridge is not None
        tracker = submitter.bridge.task_tracker
        worker.run(serve_pools(worker.bridge.tasks, {"worker": Worker}))

        async def scenario() -> tuple[dict[str, Any], list[str]]:
            nc, _ = await client(submitter.url)
            try:
                with pytest.raises(UnservedKindError) as refused:
                    await tracker.submit(task_type="nobody", payload={}, agent_id=None, timeout_s=5)
                assert refused.value.code == "invalid_spec" and refused.value.kind == "nobody"
                assert "worker" in refused.value.served and "'nobody'" in refused.value.message
                assert "kinds served: " in refused.value.message and "task_type=" in refused.value.message
                results = await Inbox().subscribe(nc, "tasks.*.result")
                queued = await tracker.submit(task_type="worker", payload={"n": 7}, agent_id=None, timeout_s=5)
                assert queued["status"] == "queued"
                return orjson.loads((await results.next(WAIT_S)).data), await served_kinds(nc)
            finally:
                await nc.close()

        done, served = submitter.run(scenario())
        assert done["result"]["n"] == 7 and done["node"] == worker.node_id
        assert done["agent_id"].startswith("task-worker-")
        assert "worker" in served and "nobody" not in served
    finally:
        submitter.close()
        worker.close()
