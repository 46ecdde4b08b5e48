"""``TaskTracker``: what became of each task, and the web's ``Tasks`` port.

It follows ``tasks.*.progress`` and ``tasks.*.result`` (published by whichever
node ran the task) and keeps the newest ``keep`` tasks in memory, so any node
can answer ``get(task_id)``. ``submit`` queues through the ``TaskQueue``.

With an injected ``TaskStore`` (the journal's ``tasks`` table, wired by the
node) every transition is also recorded there, in arrival order, and ``get``
falls back to it for a task this node has not seen (or has forgotten, or
saw before a restart). A failing store is logged and counted
(``store_errors``), never raised into nats-py. Runs on the event loop.
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
        self._states: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        nc = self.wire.nc
        self._subs = [await nc.subscribe("tasks.*.progress", cb=self._on_message),
                      await nc.subscribe("tasks.*.result", cb=self._on_message)]

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                logger.debug("task tracker unsubscribe: %r", exc)
        self._subs.clear()

    async def submit(
        self, *, task_type: str, payload: Mapping[str, Any], agent_id: str | None, timeout_s: float
    ) -> dict[str, Any]:
        """Queue a task for any agent of kind ``task_type``: ``{"task_id", "status": "queued"}``."""
        if agent_id is not None:
            raise SpecError(None, "agent_id", agent_id,
                            "the task queue routes by kind; omit agent_id, or command that agent directly")
        queued = await self.queue.submit(task_type, payload, timeout_s=timeout_s)
        task_id = str(queued["task_id"])
        self._remember(task_id, {"status": "queued", "task_type": task_type})
        await self._record(task_id, {"status": "queued", "kind": task_type, "payload": dict(payload)})
        return {"task_id": queued["task_id"], "status": "queued"}

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """``{"task_id", "status", "result"?, "error"?, ...}``, or ``None`` if never seen here."""
        state = self._states.get(task_id)
        if state is None and self.store is not None:
            try:
                return await self.store.get(task_id)
            except Exception:
                self.store_errors += 1
                logger.exception("reading task %s from the task store failed", task_id)
                return None
        return None if state is None else {"task_id": task_id, **state}

    def status_of(self, task_id: str) -> str | None:
        """The last status seen for ``task_id`` (never blocks)."""
        state = self._states.get(task_id)
        return None if state is None else state.get("status")

    def _remember(self, task_id: str, fields: Mapping[str, Any]) -> None:
        state = self._states.pop(task_id, {})
        state.update(fields)
        self._states[task_id] = state
        while len(self._states) > self.keep:
            self._states.popitem(last=False)

    async def _on_message(self, msg: Msg) -> None:
        try:
            raw = decode_json(msg.data)
        except EnvelopeError:
            logger.warning("malformed message on %s", msg.subject)
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("task_id"), str):
            return
        task_id = raw["task_id"]
        if msg.subject.endswith(".result"):
            fields = {"status": "done", "result": raw.get("result"), "agent_id": raw.get("agent_id"),
                      "node": raw.get("node")}
        else:
            current = self._states.get(task_id, {}).get("status")
            if current == "done" and raw.get("status") != "done":
                return  # a late progress message after the result
            fields = {k: v for k, v in raw.items() if k != "task_id"}
        self._remember(task_id, fields)
        await self._record(task_id, fields)

    async def _record(self, task_id: str, fields: Mapping[str, Any]) -> None:
        if self.store is None:
            return
        try:
            await self.store.record(task_id, fields)
        except Exception:
            self.store_errors += 1
            logger.exception("recording task %s (%s) in the task store failed", task_id, fields.get("status"))
