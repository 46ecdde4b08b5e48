"""The task queue's JetStream layout: two streams, one durable consumer per kind and priority.

- ``MS_TASKS`` (subjects ``tasks.*.queue.*``, work-queue retention, file
  storage) holds the tasks; ``MS_TASKS_DEAD`` (``tasks.*.dead``, kept) the
  dead letters. A node creates both when it starts (``ensure_streams``), so a
  plain JetStream publish finds its stream before anything was submitted.
- ``tasks-{kind}-{priority}``: the durable pull consumer of one kind and
  priority, shared by every node that serves the kind (so each task goes to
  one worker at a time). A worker creates the kind's three when it starts.

Which kinds are served is read from JetStream, so every node (and any NATS
client) gets the same, cluster-wide answer: a kind is served once its durable
consumer exists. A consumer is durable: it stays when its nodes stop, and
tasks submitted then wait in the stream for the next node that serves the
kind. Retire a kind by deleting its consumers (``nats consumer rm MS_TASKS
tasks-{kind}-high``, ``-normal``, ``-low``).

Runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError

from mistersmith.envelope import decode_json, encode_json

from . import subjects
from .errors import JetStreamUnavailableError

__all__ = ["DEAD_STREAM", "TASK_STREAM", "durable_name", "ensure_consumer", "ensure_streams", "is_served",
           "served_kinds"]

TASK_STREAM = "MS_TASKS"
DEAD_STREAM = "MS_TASKS_DEAD"
_PREFIX = "tasks-"
_API_TIMEOUT_S = 5.0
_ATTEMPTS = 3  # looks at a stream before the node gives up on JetStream


def durable_name(kind: str, priority: str) -> str:
    """The durable consumer of ``kind``'s ``priority`` queue: ``tasks-{kind}-{priority}``."""
    subjects.task_queue(kind, priority)  # SpecError for a bad kind or priority
    return f"{_PREFIX}{kind}-{priority}"


async def ensure_streams(js: JetStreamContext, replicas: int) -> None:
    """Create ``MS_TASKS`` and ``MS_TASKS_DEAD``, or update them where their subjects, retention,
    storage or replicas differ. Idempotent.

    ``JetStreamUnavailableError`` if the server has no JetStream (or does not answer)."""
    for name, subject, retention in ((TASK_STREAM, subjects.wildcard("task_queue"), RetentionPolicy.WORK_QUEUE),
                                     (DEAD_STREAM, subjects.wildcard("task_dead"), RetentionPolicy.LIMITS)):
        config = StreamConfig(name=name, subjects=[subject], retention=retention, storage=StorageType.FILE,
                              num_replicas=replicas)
        await _racing(name, lambda: _ensure(js, name, config))


async def _racing(name: str, create: Callable[[], Awaitable[Any]]) -> None:
    """``create`` (idempotent), looked at again when JetStream gives no answer, up to ``_ATTEMPTS`` times.

    On a clustered JetStream, nodes starting together race to create the same stream or consumer
    and the losers may get no answer; by the next look the winner's is there."""
    for attempt in range(_ATTEMPTS):
        try:
            await create()
            return
        except (ServiceUnavailableError, NoRespondersError, TimeoutError) as exc:
            if attempt == _ATTEMPTS - 1:
                raise JetStreamUnavailableError(f"{name}: {exc!r}") from exc


async def _ensure(js: JetStreamContext, name: str, config: StreamConfig) -> None:
    try:
        have = (await js.stream_info(name)).config
        # Update only what differs: on a clustered JetStream an update racing another
        # node's create of the same stream (nodes starting together) gets no answer.
        if (have.subjects, have.retention, have.storage, have.num_replicas) != (
                config.subjects, config.retention, StorageType.FILE, config.num_replicas):
            await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


async def ensure_consumer(js: JetStreamContext, kind: str, priority: str, *, ack_wait_s: float,
                          max_deliver: int) -> str:
    """Create ``kind``'s durable consumer for ``priority`` (idempotent); returns its name."""
    durable = durable_name(kind, priority)
    config = ConsumerConfig(durable_name=durable, filter_subject=subjects.task_queue(kind, priority),
                            ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s, max_deliver=max_deliver,
                            max_ack_pending=-1)
    await _racing(durable, lambda: js.add_consumer(TASK_STREAM, config))
    return durable


async def is_served(js: JetStreamContext, kind: str, priority: str = "normal") -> bool:
    """Whether some node serves ``kind`` (its consumer for ``priority`` exists on ``MS_TASKS``)."""
    try:
        await js.consumer_info(TASK_STREAM, durable_name(kind, priority), timeout=_API_TIMEOUT_S)
    except NotFoundError:  # no such consumer, or no stream yet
        return False
    return True


async def served_kinds(nc: NATS) -> list[str]:
    """Every kind with a consumer on ``MS_TASKS``, sorted (empty if the stream does not exist)."""
    kinds: set[str] = set()
    offset = 0
    while True:
        reply = await nc.request(f"$JS.API.CONSUMER.NAMES.{TASK_STREAM}", encode_json({"offset": offset}),
                                 timeout=_API_TIMEOUT_S)
        page: Any = decode_json(reply.data)
        if not isinstance(page, dict) or "error" in page:  # no stream yet: nothing is served
            return sorted(kinds)
        names = [str(n) for n in page.get("consumers") or []]
        for name in names:
            kind, _, priority = name.removeprefix(_PREFIX).rpartition("-")
            if name.startswith(_PREFIX) and priority in subjects.PRIORITIES and subjects.is_token(kind):
                kinds.add(kind)
        offset += len(names)
        if not names or offset >= int(page.get("total", 0)):
            return sorted(kinds)
