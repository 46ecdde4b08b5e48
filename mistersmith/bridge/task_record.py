"""``TaskRecord``: what this node's task workers write about each task, and whom they tell.

The record is the only word on what became of a task; NATS messages about a
task are notifications, and nobody trusts their bodies (NATS does not tell a
subscriber who published).

- With a ``TaskStore`` (the journal's ``tasks`` table, shared by every node),
  ``claim`` records that an attempt took a task, under a random token that is
  never published; ``settle`` records its outcome only while the row still
  holds that token; ``record`` writes what no claim covers (``queued``; a
  ``retrying`` or ``dead`` before any claim). Done and dead are final.
- Without one, the claims live here, in memory: only this node can check them.

Each transition is then told, in process, to the listeners (the node's
``TaskTracker``). A failing store is logged and counted (``store_errors`` in
the queue's counters), never raised: the worker decides what to do (see the
return values). Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mistersmith.ports import TaskStore

__all__ = ["TaskListener", "TaskRecord"]

logger = logging.getLogger("mistersmith.bridge.tasks")

T = TypeVar("T")

TaskListener = Callable[[str, Mapping[str, Any]], None]
"""Told ``(task_id, fields)`` of each transition this node's queue makes, once the store has it.
Runs on the event loop and must not block; an exception is logged and the queue goes on."""


class TaskRecord:
    """The claims and outcomes of this node's task attempts; ``counters`` is the queue's."""

    def __init__(self, store: TaskStore | None, counters: dict[str, int]) -> None:
        self.store = store
        self.counters = counters
        self._listeners: list[TaskListener] = []
        self._claims: dict[str, str] = {}  # task_id -> token, when there is no store

    def add_listener(self, listener: TaskListener) -> None:
        self._listeners.append(listener)

    def _tell(self, task_id: str, fields: Mapping[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(task_id, fields)
            except Exception:
                logger.exception("task listener failed on %s (%s)", task_id, fields.get("status"))

    async def _stored(self, what: str, task_id: str, call: Awaitable[T]) -> T | None:
        """``await call``; ``None`` (logged, counted in ``store_errors``) if the store failed."""
        try:
            return await call
        except Exception:
            self.counters["store_errors"] += 1
            logger.exception("task store: %s of task %s failed", what, task_id)
            return None

    async def record(self, task_id: str, fields: Mapping[str, Any]) -> None:
        """A transition no claim covers (``queued``; ``retrying``/``dead`` before a claim)."""
        if self.store is not None:
            await self._stored("record", task_id, self.store.record(task_id, fields))
        self._tell(task_id, fields)

    async def claim(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool | None:
        """True: this attempt holds the task; False: it is done or dead already; None: the store failed."""
        if self.store is not None:
            taken = await self._stored("claim", task_id, self.store.claim(task_id, claim, fields))
            if not taken:
                return taken
        else:
            self._claims[task_id] = claim
        self._tell(task_id, fields)
        return True

    async def settle(self, task_id: str, claim: str, fields: Mapping[str, Any]) -> bool | None:
        """True: recorded; False: this attempt no longer holds the task (its outcome is dropped:
        logged, counted in ``claims_lost``); None: the store failed."""
        if self.store is not None:
            settled = await self._stored("settle", task_id, self.store.settle(task_id, claim, fields))
        else:
            settled = self._claims.get(task_id) == claim
            if settled:
                del self._claims[task_id]
        if settled:
            self._tell(task_id, fields)
        elif settled is False:
            self.counters["claims_lost"] += 1
            logger.warning("task %s: a later delivery holds the task now (or it is settled); this attempt's "
                           "outcome (%s) is dropped", task_id, fields.get("status"))
        return settled

    async def transition(self, task_id: str, claim: str | None, fields: Mapping[str, Any]) -> bool:
        """Record ``retrying`` or ``dead``, under ``claim`` when the attempt holds one. False only if
        a redelivery took the claim over (leave the message alone then); a failing store is logged
        and counted, and the attempt goes on."""
        if claim is None:
            await self.record(task_id, fields)
            return True
        return await self.settle(task_id, claim, fields) is not False
