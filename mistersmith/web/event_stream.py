"""``GET /events/stream``: supervision events as Server-Sent Events, resumable from the journal.

Each event is one ``SupervisionEvent.to_dict()`` (with ``trace_id`` once events carry it)::

    id: 1042
    event: supervision
    data: {"seq": 1042, "event_type": "restarted", "agent_id": "a1", ...}

- ``id`` is the event's ``seq`` in the ``Timeline`` (the journal's on a node).
- Filters (query string): ``agent_id``, ``types`` (comma-separated or
  repeated event types), ``node`` (a node id).
- ``Last-Event-ID`` (or ``?last_event_id=``) resumes after that ``seq``: first
  every stored event after it, read from the timeline in pages, then live
  ones, with no gap and nothing twice.
- Limits, opening, keepalive and shutdown as every SSE endpoint (``sse.SseEndpoint``).
- One ``EventFeed`` follows the timeline for every stream (one database
  connection however many consoles watch). A stream that falls
  ``stream_buffer`` events behind is ended; its client reconnects with
  ``Last-Event-ID`` and misses nothing. If the follow itself fails (the
  database went away), every stream ends the same way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from mistersmith.errors import SpecError
from mistersmith.ports import Timeline
from mistersmith.supervisors import EVENT_TYPES

from .backends import Backends
from .config import WebConfig
from .sse import SseEndpoint, Subscription, parse_resume

__all__ = ["EventFeed", "EventFilter", "FeedSubscription", "SupervisionStream", "encode_supervision", "parse_events_query"]

logger = logging.getLogger("mistersmith.web.event_stream")

PAGE = 500
EVENT_BUFFER = 10_000
"""Events a stream may fall behind before it is ended (a spawn of 1,000 agents is a burst of 1,000)."""
_KEYS = frozenset({"agent_id", "types", "node", "last_event_id"})


@dataclass(frozen=True)
class EventFilter:
    """Which supervision events a stream sends (``None``: any)."""

    agent_id: str | None = None
    types: frozenset[str] | None = None
    node: str | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        return ((self.agent_id is None or event.get("agent_id") == self.agent_id)
                and (self.types is None or event.get("event_type") in self.types)
                and (self.node is None or event.get("node_id") == self.node))


def parse_events_query(query: QueryParams, last_event_id: str | None) -> tuple[EventFilter, int | None]:
    """The filter and the ``seq`` to resume after; ``SpecError`` (naming the key) if bad."""
    unknown = sorted(set(query.keys()) - _KEYS)
    if unknown:
        raise SpecError(None, unknown[0], query[unknown[0]], f"use only: {', '.join(sorted(_KEYS))}")
    types = [t.strip() for raw in query.getlist("types") for t in raw.split(",") if t.strip()]
    bad = sorted(set(types) - set(EVENT_TYPES))
    if bad:
        raise SpecError(None, "types", bad[0], f"use event types: {', '.join(EVENT_TYPES)}")
    flt = EventFilter(agent_id=query.get("agent_id") or None, types=frozenset(types) if types else None,
                      node=query.get("node") or None)
    return flt, parse_resume(query, last_event_id)


def encode_supervision(event: Mapping[str, Any]) -> bytes:
    return b"id: %d\nevent: supervision\ndata: %s\n\n" % (int(event["seq"]), orjson.dumps(event))


class FeedSubscription:
    """One stream's view of the feed: the stored backlog after ``after_seq``, then live events."""

    def __init__(self, feed: EventFeed, flt: EventFilter, after_seq: int | None, buffer: int) -> None:
        self._feed = feed
        self.filter = flt
        self.last_seq = after_seq  # None: from now on
        self._buffer = buffer
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        """A live event (on the loop, from the feed)."""
        if self.closed or not self.filter.matches(event):
            return
        if len(self._queue) >= self._buffer:
            self.overflowed = True
            self.close()
            return
        self._queue.append(event)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._feed.discard(self)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            await self._feed.started()
        except Exception as exc:  # the timeline cannot be read: end; the client retries
            logger.warning("supervision event stream: the timeline is not readable: %s", exc)
            return
        while self.last_seq is not None and not self.closed:
            f = self.filter
            page = await self._feed.timeline.events(
                after_seq=self.last_seq, agent_id=f.agent_id, node_id=f.node,
                event_types=sorted(f.types) if f.types is not None else None, limit=PAGE)
            for event in page:
                self.last_seq = int(event["seq"])
                yield event
            if len(page) < PAGE:
                break
        while True:
            while self._queue:
                event = self._queue.popleft()
                if self.last_seq is None or event["seq"] > self.last_seq:
                    self.last_seq = int(event["seq"])
                    yield event
            if self.closed:
                return
            self._ready.clear()
            await self._ready.wait()


class EventFeed:
    """One follow of a ``Timeline``, from its head at the first subscriber, shared by every stream."""

    def __init__(self, timeline: Timeline, buffer: int) -> None:
        self.timeline = timeline
        self.buffer = buffer
        self._subs: set[FeedSubscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._head: asyncio.Future[int] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, flt: EventFilter, after_seq: int | None) -> FeedSubscription:
        """On the loop. Starts the follow if it is not running."""
        sub = FeedSubscription(self, flt, after_seq, self.buffer)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            self._head = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._follow(self._head), name="mistersmith-web-event-feed")
        return sub

    def discard(self, sub: FeedSubscription) -> None:
        self._subs.discard(sub)

    async def started(self) -> int:
        """The head ``seq`` the follow began after (live events are all later)."""
        assert self._head is not None
        return await asyncio.shield(self._head)

    async def _follow(self, head: asyncio.Future[int]) -> None:
        try:
            start = await self.timeline.head_seq()
            head.set_result(start)
            async for event in self.timeline.follow(after_seq=start):
                for sub in list(self._subs):
                    sub.offer(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not head.done():
                head.set_exception(exc)
                head.exception()  # retrieved: each subscriber sees it through started()
            logger.warning("supervision event feed ended: %s: %s; streams end, clients resume", type(exc).__name__, exc)
        finally:
            if not head.done():  # cancelled before the head was read
                head.set_exception(ConnectionError("the supervision event feed stopped"))
                head.exception()
            for sub in list(self._subs):
                sub.close()

    async def aclose(self) -> None:
        for sub in list(self._subs):
            sub.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SupervisionStream(SseEndpoint):
    """``GET /events/stream`` (see the module docstring)."""

    what = "supervision event streaming"

    def __init__(self, backends: Backends, config: WebConfig, timeline: Timeline,
                 buffer: int = EVENT_BUFFER) -> None:
        super().__init__(backends, config)
        self.feed = EventFeed(timeline, buffer)

    async def open(self, query: QueryParams, last_event_id: str | None) -> Subscription:
        flt, after_seq = parse_events_query(query, last_event_id)
        sub = self.feed.subscribe(flt, after_seq)
        try:
            await self.feed.started()  # so every event after the ": connected" comes live
        except Exception:
            pass  # the stream ends at once (FeedSubscription says why); the client retries
        return sub

    def encode(self, item: Any) -> bytes:
        return encode_supervision(item)

    async def aclose(self) -> None:
        """End every stream and the follow (server shutdown)."""
        self.close_all()
        await self.feed.aclose()
