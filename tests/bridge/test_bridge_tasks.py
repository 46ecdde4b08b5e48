"""tasks.{kind}.queue.{priority}: JetStream work queues (real nats-server with JetStream)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson
import pytest
from _bridge_helpers import WAIT_S, Inbox, BridgeNode, client, wait_until

from mistersmith import Agent, SupervisorSpec, command
from mistersmith.bridge import TaskOptions
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.ports import Tasks

FAST = TaskOptions(max_in_flight=1, max_deliver=3, ack_wait_s=1.0, backoff_s=(0.05, 0.1), idle_poll_s=0.2)
TOLERANT = SupervisorSpec("root", intensity=100, period_s=1.0)  # agents here crash on purpose


class Doer(Agent):
    """Answers ``run`` with its payload."""

    kind = "doer"

    @command("run")
    def run(self, **payload: Any) -> dict[str, Any]:
        return payload


_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()


class Flaky(Agent):
    """Crashes on the first ``fail_times`` deliveries of each task, then succeeds."""

    kind = "flaky"

    @command("run")
    def run(self, key: str, fail_times: int) -> dict[str, Any]:
        with _failures_lock:
            _failures[key] += 1
            seen = _failures[key]
        if seen <= fail_times:
            raise RuntimeError(f"flaky failure {seen}")
        return {"key": key, "after": seen}


class Stuck(Agent):
    """Runs until its incarnation is stopped (then answers, too late)."""

    kind = "stuck"

    @command("run")
    def run(self) -> dict[str, Any]:
        self.cancelled.wait(60)
        return {"stuck": True}


async def _results(inbox: Inbox, n: int) -> list[dict[str, Any]]:
    return [orjson.loads((await inbox.next()).data) for _ in range(n)]


def test_high_drains_before_normal_before_low(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"doer": Doer})
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        async def scenario() -> list[str]:
            await node.rt.aspawn("doer", "doer-1")
            nc, _ = await client(node.url)
            try:
                inbox = await Inbox().subscribe(nc, "tasks.*.result")
                for priority in ("low", "normal", "high", "low", "normal", "high"):
                    await tasks.submit("doer", {"p": priority}, priority=priority)
                await tasks.serve("doer")
                return [r["result"]["p"] for r in await _results(inbox, 6)]
            finally:
                await nc.close()

        assert node.run(scenario()) == ["high", "high", "normal", "normal", "low", "low"]
        assert tasks.counters["done"] == 6
    finally:
        node.close()


def test_a_failing_agent_gets_the_task_again(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"flaky": Flaky}, root=TOLERANT)
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        async def scenario() -> tuple[dict[str, Any], list[str]]:
            await node.rt.aspawn("flaky", "flaky-1")
            nc, _ = await client(node.url)
            try:
                result = await Inbox().subscribe(nc, "tasks.k1-task.result")
                progress = await Inbox().subscribe(nc, "tasks.k1-task.progress")
                await tasks.serve("flaky")
                await tasks.submit("flaky", {"key": "k1", "fail_times": 2}, task_id="k1-task")
                done = orjson.loads((await result.next()).data)
                statuses = []
                while not statuses or statuses[-1] != "done":
                    statuses.append(orjson.loads((await progress.next()).data)["status"])
                return done, statuses
            finally:
                await nc.close()

        done, statuses = node.run(scenario())
        assert done["ok"] is True and done["result"] == {"key": "k1", "after": 3} and done["attempt"] == 3
        assert statuses.count("retrying") == 2 and statuses[-2:] == ["running", "done"]
        assert tasks.counters["retried"] == 2
    finally:
        node.close()


def test_dead_letters_after_max_deliver_and_at_once_for_bad_input(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"flaky": Flaky}, root=TOLERANT)
    try:
        assert node.bridge is not None
        tasks = node.bridge.tasks

        async def scenario() -> list[dict[str, Any]]:
            await node.rt.aspawn("flaky", "flaky-d")
            nc, _ = await client(node.url)
            try:
                dead = await Inbox().subscribe(nc, "tasks.flaky.dead")
                await tasks.serve("flaky")
                # The malformed task goes first (one in flight at a time), so the agent is up when it
                # arrives: sent while "doomed" had the agent restarting, it could meet `restarting`
                # first and be dead-lettered only at its second delivery.
                await tasks.submit("flaky", {"wrong": True}, task_id="malformed")
                await tasks.submit("flaky", {"key": "never", "fail_times": 99}, task_id="doomed")
                letters = [orjson.loads((await dead.next()).data) for _ in range(2)]
                # they are kept in the dead-letter stream
                info = await nc.jetstream().stream_info("MS_TASKS_DEAD")
                assert info.state.messages >= 2
                return sorted(letters, key=lambda d: str(d["task_id"]))
            finally:
                await nc.close()

        doomed, malformed = node.run(scenario())
        assert doomed["task_id"] == "doomed" and doomed["deliveries"] == 3
        assert doomed["error"]["code"] in ("agent_failed", "restarting")  # crashed, or caught restarting
        assert doomed["task"]["payload"]["key"] == "never"
        assert malformed["deliveries"] == 1 and malformed["error"]["code"] == "invalid_payload"
        assert tasks.counters["dead"] == 2
    finally:
        node.close()


def test_no_task_is_lost_when_the_node_restarts_mid_task(nats_server: EmbeddedNats) -> None:
    first = BridgeNode(nats_server.url, task_options=FAST, kinds={"stuck": Stuck})
    try:
        assert first.bridge is not None
        tasks = first.bridge.tasks

        async def start() -> str:
            await first.rt.aspawn("stuck", "stuck-1")
            nc, _ = await client(first.url)
            try:
                progress = await Inbox().subscribe(nc, "tasks.survivor.progress")
                await tasks.serve("stuck")
                queued = await tasks.submit("stuck", {}, task_id="survivor")
                while orjson.loads((await progress.next()).data)["status"] != "running":
                    pass
                return str(queued["task_id"])
            finally:
                await nc.close()

        task_id = first.run(start())
    finally:
        first.close()  # mid-task: never acked

    class Unstuck(Agent):
        kind = "stuck"

        @command("run")
        def run(self) -> dict[str, Any]:
            return {"finished_by": "second"}

    second = BridgeNode(nats_server.url, task_options=FAST, kinds={"stuck": Unstuck})
    try:
        assert second.bridge is not None
        tasks2 = second.bridge.tasks

        async def finish() -> dict[str, Any]:
            await second.rt.aspawn("stuck", "stuck-2")
            nc, _ = await client(second.url)
            try:
                result = await Inbox().subscribe(nc, f"tasks.{task_id}.result")
                await tasks2.serve("stuck")
                return dict(orjson.loads((await result.next(WAIT_S)).data))
            finally:
                await nc.close()

        done = second.run(finish())
        assert done["result"] == {"finished_by": "second"} and done["node"] == second.node_id
        assert done["attempt"] == 2
    finally:
        second.close()


def test_the_tasks_port_submits_and_tracks(nats_server: EmbeddedNats) -> None:
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"doer": Doer})
    try:
        assert node.bridge is not None
        tracker = node.bridge.task_tracker
        assert isinstance(tracker, Tasks)

        async def scenario() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            await node.rt.aspawn("doer", "doer-p")
            await node.bridge.tasks.serve("doer")  # type: ignore[union-attr]
            nc, _ = await client(node.url)
            try:
                results = await Inbox().subscribe(nc, "tasks.*.result")
                queued = await tracker.submit(task_type="doer", payload={"q": 1}, agent_id=None, timeout_s=5)
                assert queued["status"] == "queued"
                await results.next()
                await wait_until(lambda: tracker.status_of(queued["task_id"]) == "done", poke=nc.flush)
                return await tracker.get(queued["task_id"]), await tracker.get("never-seen")
            finally:
                await nc.close()

        state, unknown = node.run(scenario())
        assert state is not None and state["status"] == "done" and state["result"] == {"q": 1}
        assert state["node"] == node.node_id and unknown is None
    finally:
        node.close()


def test_a_forged_result_is_ignored_without_a_store_too(nats_server: EmbeddedNats,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """No task store: the tracker believes only what this node's own worker did (told in process)."""
    node = BridgeNode(nats_server.url, task_options=FAST, kinds={"doer": Doer})
    try:
        assert node.bridge is not None
        bridge = node.bridge
        tracker = bridge.task_tracker

        async def scenario() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            await node.rt.aspawn("doer", "doer-f")
            nc, _ = await client(node.url)
            try:
                queued = await bridge.tasks.submit("doer", {"q": 2}, timeout_s=5)
                task_id = str(queued["task_id"])  # nobody serves "doer" yet: it stays queued
                await nc.publish(f"tasks.{task_id}.result", orjson.dumps(
                    {"task_id": task_id, "ok": True, "result": {"q": "forged"}, "node": "elsewhere"}))
                await nc.flush()
                await wait_until(lambda: tracker.results_rejected == 1, poke=nc.flush)
                while_queued = await tracker.get(task_id)
                results = await Inbox().subscribe(nc, f"tasks.{task_id}.result")
                await bridge.tasks.serve("doer")
                genuine = orjson.loads((await results.next()).data)
                assert genuine["result"] == {"q": 2}
                await wait_until(lambda: tracker.status_of(task_id) == "done", poke=nc.flush)
                # A marker after it on the same subscription: once it is rejected, the genuine one was handled.
                await nc.publish("tasks.marker-1.result", orjson.dumps({"task_id": "marker-1", "result": 0}))
                await wait_until(lambda: any("tasks.marker-1.result" in r.getMessage() for r in caplog.records),
                                 poke=nc.flush)
                return while_queued, await tracker.get(task_id)
            finally:
                await nc.close()

        while_queued, done = node.run(scenario())
        assert while_queued is not None and while_queued["status"] == "queued" and "result" not in while_queued
        assert done is not None and done["status"] == "done" and done["result"] == {"q": 2}
        assert done["node"] == node.node_id and tracker.results_rejected == 2  # the forgery and the marker
        assert bridge.counters.get("task_results_rejected") == 2
    finally:
        node.close()
