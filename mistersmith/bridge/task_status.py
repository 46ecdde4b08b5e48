"""``TaskTracker``: what became of each task, and the web's ``Tasks`` port.

``submit`` queues through the ``TaskQueue``, for a kind some node serves
(else it refuses, naming the kinds served); ``get(task_id)`` answers from
the record that only nodes write, never from what a NATS message says (NATS
does not tell a subscriber who published, and any client could publish on
``tasks.{task_id}.result``):

- With an injected ``TaskStore`` (the journal's ``tasks`` table, shared by
  every node and wired by the node) the record is the table: the submitting
  node writes ``queued``, the worker that claimed the task everything after
  (see ``tasks``). ``get`` reads it; if it cannot, it answers from memory.
- Without one, the record is what this node's own queue did (told in
  process, ``TaskQueue.add_listener``): tasks other nodes ran are unknown here.

The tracker keeps the newest ``keep`` tasks in memory. It follows
``tasks.*.progress`` and ``tasks.*.result`` only as notifications: each one
refreshes the task from the store. One that says a task is done (a result,
or ``done`` progress) when the record does not, or whose result is not the
recorded one, is ignored: logged and counted (``results_rejected``, and the
bridge counter ``task_results_rejected``). A failing store is logged and
counted (``store_errors``), never raised into nats-py. Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mistersmith.envelope import EnvelopeError, decode_json
from mistersmith.errors import SpecError
from mistersmith.ports import TaskStore

from . import subjects
from .lifecycle import unsubscribe_quietly
from .tasks import TaskQueue
from .wire import Wire

__all__ = ["TaskTracker"]

logger = logging.getLogger("mistersmith.bridge.tasks")


class TaskTracker:
    """Task states seen on the bus; implements ``mistersmith.ports.Tasks``."""

    def __init__(self, queue: TaskQueue, wire: Wire, *, keep: int = 10_000, store: TaskStore | None = None) -> None:
        self.queue = queue
        self.wire = wire
        self.keep = keep
        self.store = store
        self.store_errors = 0
        self.results_rejected = 0
        self._states: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._subs: list[Subscription] = []
        queue.add_listener(self._remember)

    async def start(self) -> None:
        nc = self.wire.nc
        self._subs = [await nc.subscribe(subjects.wildcard("task_progress"), cb=self._on_message),
                      await nc.subscribe(subjects.wildcard("task_result"), cb=self._on_message)]

    async def close(self) -> None:
        await unsubscribe_quietly(self._subs, "task tracker")
        self._subs.clear()

    async def submit(
        self, *, task_type: str, payload: Mapping[str, Any], agent_id: str | None, timeout_s: float,
        command: str = "run",
    ) -> dict[str, Any]:
        """Queue a task for any agent of kind ``task_type``: ``{"task_id", "status": "queued"}``.

        Refused (``UnservedKindError``, ``invalid_spec``) when no node serves that kind, so a task
        never waits for a worker that does not exist (``TaskQueue.check_served``)."""
        if agent_id is not None:
            raise SpecError(None, "agent_id", agent_id,
                            "the task queue routes by kind; omit agent_id, or command that agent directly")
        await self.queue.check_served(task_type, key="task_type")
        # the queue records it and tells us
        queued = await self.queue.submit(task_type, payload, command=command, timeout_s=timeout_s)
        return {"task_id": queued["task_id"], "status": "queued"}

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """``{"task_id", "status", "result"?, "error"?, ...}`` as recorded, or ``None`` if unknown."""
        if self.store is not None:
            try:
                found = await self.store.get(task_id)
            except Exception:
                self.store_errors += 1
                logger.exception("reading task %s from the task store failed; answering from memory", task_id)
            else:
                if found is not None:
                    return found
        state = self._states.get(task_id)
        return None if state is None else {"task_id": task_id, **state}

    def status_of(self, task_id: str) -> str | None:
        """The last status seen for ``task_id`` (never blocks)."""
        state = self._states.get(task_id)
        return None if state is None else state.get("status")

    def _remember(self, task_id: str, fields: Mapping[str, Any]) -> None:
        """A transition from the record (this node's queue, or the store); the payload is not kept."""
        state = self._states.pop(task_id, {})
        state.update((k, v) for k, v in fields.items() if k not in ("task_id", "payload"))
        self._states[task_id] = state
        while len(self._states) > self.keep:
            self._states.popitem(last=False)

    async def _on_message(self, msg: Msg) -> None:
        """A notification: refresh from the record; a claim of ``done`` the record does not back is rejected."""
        try:
            raw = decode_json(msg.data)
        except EnvelopeError:
            logger.warning("malformed message on %s", msg.subject)
            return
        task_id = msg.subject.split(".")[1]
        if not isinstance(raw, dict) or raw.get("task_id") != task_id:
            logger.warning("message on %s is not about task %s; ignored", msg.subject, task_id)
            return
        says_done = msg.subject.endswith(".result") or raw.get("status") == "done"
        if self.store is not None:
            try:
                found = await self.store.get(task_id)
            except Exception:
                self.store_errors += 1
                logger.exception("reading task %s from the task store failed", task_id)
                return
            if found is not None:
                self._remember(task_id, found)
            record = found
        else:
            record = self._states.get(task_id)
        if says_done and not _backs(record, raw, msg.subject.endswith(".result")):
            self.results_rejected += 1
            self.wire.counters.add("task_results_rejected")
            logger.warning("ignored %s: task %s is %s in the record, and only the worker that claimed it "
                           "settles it", msg.subject, task_id, "unknown" if record is None else record.get("status"))


def _backs(record: Mapping[str, Any] | None, message: Mapping[str, Any], is_result: bool) -> bool:
    """Whether the record says what a ``done`` message says: done, and (for a result) that result."""
    if record is None or record.get("status") != "done":
        return False
    return not is_result or message.get("result") == record.get("result")
