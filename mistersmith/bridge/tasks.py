"""The task queue: JetStream work queues ``tasks.{kind}.queue.{priority}``.

- One work-queue stream (``MS_TASKS``, subjects ``tasks.*.queue.*``, file
  storage) holds the tasks; one durable pull consumer per kind and priority
  (``tasks-{kind}-{priority}``), shared by every node that serves the kind, so
  each task goes to one worker at a time. Dead letters go to a second stream
  (``MS_TASKS_DEAD``, ``tasks.*.dead``) and are kept.
- A task is ``{"task_id", "command", "payload", "timeout_s"?}`` (``command``
  defaults to ``run``). ``submit`` publishes it with ``Nats-Msg-Id: task_id``, so a
  resubmission within the stream's duplicate window is dropped by JetStream.
- ``serve(kind)`` runs a worker on this node: it keeps at most ``max_in_flight``
  tasks in hand, and whenever a slot is free it asks ``high`` first, then
  ``normal``, then ``low`` (a no-wait pull each), so ``high`` drains before
  ``normal`` and ``normal`` before ``low``. Each task goes with ``Runtime.aask``
  to the agent its ``TaskAgents`` lends (``task_agents``: by default a hosted
  agent of the kind, round robin; a node serves with an ``AgentPool``); while
  it runs the worker tells JetStream it is in progress, so a long task is not
  redelivered. The streams and consumers are ``task_streams``'.
- Success: the result is published on ``tasks.{task_id}.result`` and the task is
  acked. Failure: nak'ed with backoff (``backoff_s``) until ``max_deliver``
  deliveries, then published on ``tasks.{kind}.dead`` and terminated. An error
  no retry can fix (``invalid_payload``, ``unknown_command``, a malformed task)
  goes to the dead letters at once.
- Progress (``queued``, ``running``, ``retrying``, ``done``, ``dead``) goes to
  ``tasks.{task_id}.progress``.
- A node that stops mid-task never acks it: JetStream redelivers it after
  ``ack_wait_s`` to whichever worker asks next. No task is lost.

Only the worker that claimed a task says what became of it (``TaskRecord``):
it records a claim (a random token, never published) before it runs the
task, and the outcome, under that claim, before it publishes on
``tasks.{task_id}.result``/``.progress``, which are notifications only. A
redelivered task already ``done`` or ``dead`` is acked, not run; an attempt
whose claim a redelivery took over drops its outcome. A task can run twice
between the agent's start and the commit of ``done`` (a crash, or a
redelivery after ``ack_wait_s`` without keep-alives).

Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.audit import internal
from mistersmith.envelope import EnvelopeError, decode_json, encode_json
from mistersmith.errors import MisterSmithError, SpecError
from mistersmith.ports import TaskStore
from mistersmith.runtime import Runtime

from . import subjects, task_streams
from .errors import UnservedKindError
from .lifecycle import TaskSet, cancel_and_wait, unsubscribe_quietly
from .task_agents import HostedAgents, TaskAgents
from .task_record import TaskListener, TaskRecord
from .wire import Wire

__all__ = ["DEAD_STREAM", "TASK_STREAM", "TaskListener", "TaskOptions", "TaskQueue"]

logger = logging.getLogger("mistersmith.bridge.tasks")

TASK_STREAM = task_streams.TASK_STREAM
DEAD_STREAM = task_streams.DEAD_STREAM
_PERMANENT = frozenset({"invalid_payload", "unknown_command", "invalid_envelope", "invalid_task"})
_TASK_KEYS = frozenset({"task_id", "command", "payload", "timeout_s"})
_CLOSE_S = 5.0
_PULL_ANSWER_S = 2.0  # how long a no-wait pull waits for JetStream's answer
_PULL_AGAIN_S = 0.1  # the breath before pulling again after an unanswered pull


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Task-queue settings; every default is stated here once."""

    max_in_flight: int = 4
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    task_timeout_s: float = 300.0
    idle_poll_s: float = 1.0
    replicas: int = 1

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_deliver < 1 or self.replicas < 1:
            raise SpecError(None, "max_in_flight/max_deliver/replicas",
                            (self.max_in_flight, self.max_deliver, self.replicas), "use integers >= 1")
        for key in ("ack_wait_s", "task_timeout_s", "idle_poll_s"):
            if not getattr(self, key) > 0:
                raise SpecError(None, key, getattr(self, key), "use a number of seconds > 0")
        if not self.backoff_s or any(not b >= 0 for b in self.backoff_s):
            raise SpecError(None, "backoff_s", self.backoff_s, "use a non-empty list of seconds >= 0")

    def delay_s(self, deliveries: int) -> float:
        """The nak delay after delivery number ``deliveries`` (1 for the first) failed."""
        return self.backoff_s[min(deliveries, len(self.backoff_s)) - 1]


def _task(data: bytes) -> tuple[str, str, dict[str, Any], float | None]:
    raw = decode_json(data)
    if not isinstance(raw, dict) or set(raw) - _TASK_KEYS:
        raise EnvelopeError(None, f"a task is an object with keys {sorted(_TASK_KEYS)}", code="invalid_task")
    task_id, command, payload = raw.get("task_id"), raw.get("command", "run"), raw.get("payload", {})
    if not subjects.is_token(task_id) or not subjects.is_token(command) or not isinstance(payload, dict):
        raise EnvelopeError(None, "task_id and command are subject tokens, payload an object", code="invalid_task")
    timeout = raw.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise EnvelopeError("timeout_s", f"{timeout!r} should be a number of seconds > 0", code="invalid_task")
    return str(task_id), str(command), payload, None if timeout is None else float(timeout)


class TaskQueue:
    """Submit tasks, and serve kinds with this node's agents.

    ``counters``: ``submitted``, ``done``, ``retried``, ``dead``; ``skipped``
    (redeliveries of tasks already settled), ``claims_lost`` (outcomes dropped
    because a redelivery took the task over), ``store_errors``.
    """

    def __init__(self, runtime: Runtime, wire: Wire, options: TaskOptions | None = None, *,
                 store: TaskStore | None = None) -> None:
        self.runtime = runtime
        self.node_id = runtime.node_id
        self.wire = wire
        self.js = wire.nc.jetstream()
        self.options = options or TaskOptions()
        self.store = store
        self.counters = {"submitted": 0, "done": 0, "retried": 0, "dead": 0, "skipped": 0, "claims_lost": 0,
                         "store_errors": 0}
        self.record = TaskRecord(store, self.counters)
        self._ready = False
        self._consumers: set[tuple[str, str]] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._subs: list[Subscription] = []
        self._tasks = TaskSet()
        self._doorbell: dict[str, asyncio.Event] = {}
        self._agents: dict[str, TaskAgents] = {}

    # -- setup ---------------------------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Create (or update) the two streams. Idempotent."""
        if not self._ready:
            await task_streams.ensure_streams(self.js, self.options.replicas)
            self._ready = True

    async def _ensure_consumer(self, kind: str, priority: str) -> str:
        if (kind, priority) not in self._consumers:
            await task_streams.ensure_consumer(self.js, kind, priority, ack_wait_s=self.options.ack_wait_s,
                                               max_deliver=self.options.max_deliver)
            self._consumers.add((kind, priority))
        return task_streams.durable_name(kind, priority)

    async def check_served(self, kind: str, priority: str = "normal", *, key: str = "kind") -> None:
        """``UnservedKindError`` (naming ``key``) unless some node serves ``kind``: a worker made its
        consumer (``task_streams``). ``submit`` does not check; the ``Tasks`` port does."""
        if not await task_streams.is_served(self.js, kind, priority):
            raise UnservedKindError(kind, await task_streams.served_kinds(self.wire.nc), key)

    # -- submitting ------------------------------------------------------------------------

    async def submit(self, kind: str, payload: Mapping[str, Any] | None = None, *, command: str = "run",
                     priority: str = "normal", task_id: str | None = None,
                     timeout_s: float | None = None) -> dict[str, Any]:
        """Queue a task; returns ``{"task_id", "status": "queued", "stream_seq", "duplicate"}``.

        ``timeout_s`` bounds one attempt (at most ``TaskOptions.task_timeout_s``).
        """
        await self.ensure_streams()
        task_id = task_id or uuid.uuid4().hex
        subject = subjects.task_queue(kind, priority)
        subjects.check_token(task_id, "task_id")
        subjects.check_token(command, "command")
        task: dict[str, Any] = {"task_id": task_id, "command": command, "payload": dict(payload or {})}
        if timeout_s is not None:
            task["timeout_s"] = timeout_s
        body = encode_json(task)
        ack = await self.js.publish(subject, body, headers={"Nats-Msg-Id": task_id})
        self.counters["submitted"] += 1
        await self.record.record(task_id, {"status": "queued", "kind": kind, "priority": priority,
                                     "payload": task["payload"]})
        await self._progress(task_id, "queued", kind=kind, priority=priority)
        return {"task_id": task_id, "status": "queued", "stream_seq": ack.seq, "duplicate": bool(ack.duplicate)}

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, kind: str, *, agents: TaskAgents | None = None) -> None:
        """Start a worker for ``kind`` on this node (idempotent); ``agents`` lends it the agent of
        each task (default ``HostedAgents``: this node's agents of the kind, round robin)."""
        subjects.check_token(kind, "kind")
        if kind in self._workers:
            return
        self._agents[kind] = agents or HostedAgents(self.runtime, kind)
        await self.ensure_streams()
        durables = [await self._ensure_consumer(kind, p) for p in subjects.PRIORITIES]
        bell = self._doorbell.setdefault(kind, asyncio.Event())

        async def ring(msg: Msg) -> None:
            bell.set()

        self._subs.append(await self.wire.nc.subscribe(subjects.wildcard("task_queue", kind=kind), cb=ring))
        self._workers[kind] = asyncio.get_running_loop().create_task(self._work(kind, durables, bell))

    async def close(self) -> None:
        """Stop the workers; tasks in hand are neither acked nor nak'ed (JetStream redelivers them)."""
        await cancel_and_wait([*self._workers.values(), *self._tasks], _CLOSE_S)
        self._workers.clear()
        await unsubscribe_quietly(self._subs, "tasks")
        self._subs.clear()

    async def _pull(self, durable: str, batch: int) -> list[Msg] | None:
        """A no-wait pull of up to ``batch`` messages (empty if there are none now; None if JetStream
        did not answer: the request or its answer was lost, so pull again soon)."""
        nc = self.wire.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        out: list[Msg] = []
        try:
            request = encode_json({"batch": batch, "no_wait": True})
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{TASK_STREAM}.{durable}", request, reply=inbox)
            while len(out) < batch:
                # A no-wait pull is answered at once; no answer soon means the request was lost (a
                # nats-server went away under us): give up now and pull again, rather than wait out
                # ack_wait_s. Messages sent to this inbox after that are redelivered, never lost.
                msg = await sub.next_msg(timeout=min(self.options.ack_wait_s, _PULL_ANSWER_S))
                if msg.headers and msg.headers.get("Status"):
                    break  # 404 no messages, 408 request expired...
                out.append(msg)
        except TimeoutError:
            logger.warning("pull from %s got no answer in time; pulling again", durable)
            return out or None
        finally:
            await sub.unsubscribe()
        return out

    async def _work(self, kind: str, durables: list[str], bell: asyncio.Event) -> None:
        limit = self.options.max_in_flight
        in_hand = [0]
        freed = asyncio.Event()

        def done(_: asyncio.Task[None]) -> None:
            in_hand[0] -= 1
            freed.set()

        while True:
            if in_hand[0] >= limit:
                freed.clear()
                await freed.wait()
                continue
            got: list[Msg] | None = []
            try:
                for durable in durables:  # high, normal, low: a free slot always asks high first
                    got = await self._pull(durable, limit - in_hand[0])
                    if got is None:  # unanswered (a nats-server went away): ask again after a breath
                        await asyncio.sleep(_PULL_AGAIN_S)
                        break
                    if got:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. disconnected: try again later
                logger.warning("task worker %s: pull failed: %r", kind, exc)
            if got is None:
                continue
            if not got:
                bell.clear()
                try:
                    await asyncio.wait_for(bell.wait(), self.options.idle_poll_s)
                except TimeoutError:
                    pass
                continue
            for msg in got:
                in_hand[0] += 1
                self._tasks.spawn(self._run_one(kind, msg)).add_done_callback(done)

    async def _run_one(self, kind: str, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            task_id, command, payload, timeout_s = _task(msg.data)
        except EnvelopeError as exc:
            await self._dead(kind, msg, None, "invalid_task", exc.message, deliveries)
            return
        lender = self._agents[kind]
        try:
            agent = await lender.acquire()
        except MisterSmithError as exc:
            await self._retry(kind, msg, task_id, str(exc.code), exc.message, deliveries)
            return
        error: str | None = None
        try:
            error = await self._attempt(kind, msg, agent, task_id, command, payload, timeout_s, deliveries)
        finally:
            await lender.release(agent, error)

    async def _attempt(self, kind: str, msg: Msg, agent: str, task_id: str, command: str, payload: dict[str, Any],
                       timeout_s: float | None, deliveries: int) -> str | None:
        """Run one delivery of a task on ``agent``; returns the code of the error ``aask`` raised, if any."""
        claim = secrets.token_hex(16)
        running = {"status": "running", "kind": kind, "agent_id": agent, "node": self.node_id, "attempt": deliveries}
        taken = await self.record.claim(task_id, claim, running)
        if taken is None:
            await self._retry(kind, msg, task_id, "store_unavailable",
                              "the claim could not be recorded, so the task was not run", deliveries)
            return None
        if not taken:
            await msg.ack()
            self.counters["skipped"] += 1
            logger.info("task %s is done or dead already (a redelivery): acked, not run again", task_id)
            return None
        await self._progress(task_id, "running", kind=kind, agent_id=agent, node=self.node_id, attempt=deliveries)
        keepalive = asyncio.get_running_loop().create_task(self._keep_alive(msg))
        try:
            limit = min(timeout_s or self.options.task_timeout_s, self.options.task_timeout_s)
            with internal():  # the submit was the action (mistersmith.audit); running it is the node's work
                result = await self.runtime.aask(agent, command, payload, timeout=limit)
        except MisterSmithError as exc:
            code = str(exc.code)
            if code in _PERMANENT:
                await self._dead(kind, msg, task_id, code, exc.message, deliveries, claim=claim)
            else:
                await self._retry(kind, msg, task_id, code, exc.message, deliveries, claim=claim)
            return code
        finally:
            keepalive.cancel()
        try:
            body = encode_json({"task_id": task_id, "ok": True, "result": result, "agent_id": agent,
                                "node": self.node_id, "attempt": deliveries})
        except TypeError as exc:
            await self._dead(kind, msg, task_id, "invalid_result", str(exc), deliveries, claim=claim)
            return None
        done = {"status": "done", "result": result, "agent_id": agent, "node": self.node_id, "attempt": deliveries}
        settled = await self.record.settle(task_id, claim, done)
        if settled is None:  # not recorded: JetStream gives the task again (and it runs again)
            await self._retry(kind, msg, task_id, "store_unavailable", "the result could not be recorded",
                              deliveries)
            return None
        if not settled:
            return None  # a redelivery holds the task now: that attempt settles and acks it
        await self.wire.publish(subjects.task_result(task_id), body)
        await msg.ack()
        self.counters["done"] += 1
        await self._progress(task_id, "done", attempt=deliveries)
        return None

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.options.ack_wait_s / 2)
            await msg.in_progress()

    async def _retry(self, kind: str, msg: Msg, task_id: str, code: str, message: str, deliveries: int,
                     claim: str | None = None) -> None:
        if deliveries >= self.options.max_deliver:
            await self._dead(kind, msg, task_id, code, message, deliveries, claim=claim)
            return
        delay = self.options.delay_s(deliveries)
        error = {"code": code, "message": message}
        retrying = {"status": "retrying", "attempt": deliveries, "error": error}
        if not await self.record.transition(task_id, claim, retrying):
            return  # a redelivery holds the task now
        await msg.nak(delay=delay)
        self.counters["retried"] += 1
        logger.info("task %s failed (%s), retry in %.2f s: %s", task_id, code, delay, message)
        await self._progress(task_id, "retrying", attempt=deliveries, error=error, retry_in_s=delay)
        bell = self._doorbell.get(kind)
        if bell is not None:
            asyncio.get_running_loop().call_later(delay, bell.set)

    async def _dead(self, kind: str, msg: Msg, task_id: str | None, code: str, message: str,
                    deliveries: int, claim: str | None = None) -> None:
        """Dead-letter: kept in ``MS_TASKS_DEAD`` on ``tasks.{kind}.dead``, then terminated here."""
        error = {"code": code, "message": message}
        if task_id is not None and not await self.record.transition(
                task_id, claim, {"status": "dead", "attempt": deliveries, "error": error}):
            return  # a redelivery holds the task now
        try:
            original: Any = decode_json(msg.data)
        except EnvelopeError:
            original = msg.data.decode("utf-8", "replace")
        body = encode_json({"task_id": task_id, "task": original, "error": {"code": code, "message": message},
                            "deliveries": deliveries, "node": self.node_id})
        await self.js.publish(subjects.task_dead(kind), body)
        await msg.term()
        self.counters["dead"] += 1
        logger.warning("task %s dead after %d deliveries: %s: %s", task_id, deliveries, code, message)
        if task_id is not None:
            await self._progress(task_id, "dead", attempt=deliveries, error={"code": code, "message": message})

    async def _progress(self, task_id: str, status: str, **fields: Any) -> None:
        await self.wire.publish(subjects.task_progress(task_id), encode_json({"task_id": task_id, "status": status,
                                                                               **fields}))

    def add_listener(self, listener: TaskListener) -> None:
        """Tell ``listener`` of each transition this node makes from now on (see ``TaskListener``)."""
        self.record.add_listener(listener)
