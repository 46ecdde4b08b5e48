"""``GET /discoveries/stream``: discoveries as Server-Sent Events; ``SseEndpoint``: what every SSE endpoint shares.

Each event is one discovery, whole::

    id: 42
    event: discovery
    data: {"id": "...", "seq": 42, "agent_id": "...", ...}

- Filters (query string): ``agent_id``, ``types`` (comma-separated or
  repeated), ``min_confidence``, ``exclude_self`` (see ``DiscoveryFilter``).
- ``Last-Event-ID`` (or ``?last_event_id=``) resumes after that ``seq``,
  from the store, with no gap.
- The stream opens with a ``: connected`` comment, then sends ``:
  keepalive`` every ``keepalive_s``.
- At most ``max_streams`` at once; the next gets 503 with ``Retry-After``.
- A stream that falls ``stream_buffer`` discoveries behind is ended; its
  client reconnects with ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from mistersmith.discovery import Discovery, DiscoveryFilter
from mistersmith.errors import SpecError

from .backends import Backends
from .config import WebConfig

__all__ = ["DiscoveryStream", "SseEndpoint", "Subscription", "encode_event", "parse_filter", "parse_resume"]

logger = logging.getLogger("mistersmith.web.sse")

RETRY_AFTER_S = 5
_FILTER_KEYS = frozenset({"agent_id", "types", "min_confidence", "exclude_self", "last_event_id"})
_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no")]
_OPENING = b": connected\nretry: 1000\n\n"
_KEEPALIVE = b": keepalive\n\n"
_CACHE_SIZE = 256
_encoded: dict[tuple[str, int | None], bytes] = {}


def encode_event(discovery: Discovery) -> bytes:
    """One SSE event; encoded once per discovery however many streams send it."""
    key = (discovery.id, discovery.seq)
    event = _encoded.get(key)
    if event is None:
        event = b"id: %d\nevent: discovery\ndata: %s\n\n" % (discovery.seq or 0, orjson.dumps(discovery.to_dict()))
        if len(_encoded) >= _CACHE_SIZE:
            del _encoded[next(iter(_encoded))]
        _encoded[key] = event
    return event


def _flag(key: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no", ""):
        return False
    raise SpecError(None, key, value, "use true or false")


def parse_filter(query: QueryParams, last_event_id: str | None) -> tuple[DiscoveryFilter, int | None]:
    """The filter and the ``seq`` to resume after, from a query string; ``SpecError`` if bad."""
    unknown = sorted(set(query.keys()) - _FILTER_KEYS)
    if unknown:
        raise SpecError(None, unknown[0], query[unknown[0]], f"use only: {', '.join(sorted(_FILTER_KEYS))}")
    types = [t.strip() for raw in query.getlist("types") for t in raw.split(",") if t.strip()]
    confidence: Any = query.get("min_confidence", "0")
    try:
        confidence = float(confidence)
    except ValueError:
        pass
    flt = DiscoveryFilter(agent_id=query.get("agent_id") or None, types=frozenset(types) if types else None,
                          min_confidence=confidence, exclude_self=_flag("exclude_self", query.get("exclude_self", "")))
    return flt, parse_resume(query, last_event_id)


def parse_resume(query: QueryParams, last_event_id: str | None) -> int | None:
    """The ``seq`` to resume after: the ``Last-Event-ID`` header, else ``?last_event_id=``."""
    resume = last_event_id if last_event_id is not None else query.get("last_event_id")
    if resume is None or resume == "":
        return None
    if not resume.isdigit():
        raise SpecError(None, "Last-Event-ID", resume, "use the id (a seq) of the last event received")
    return int(resume)


class Subscription(Protocol):
    """What a stream sends from: an async iterator of items, ended by ``close()``."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    def close(self) -> None: ...


class SseEndpoint:
    """An SSE endpoint with the limits every stream shares: GET only, at most ``max_streams``
    open (503 with ``Retry-After`` past it), a ``: connected`` opening, a keepalive every
    ``keepalive_s``, ended by the client's disconnect or ``close_all()`` (server shutdown).

    A subclass says what it streams: ``unavailable()`` (why not, or ``None``), ``open(query,
    last_event_id)`` (a ``Subscription``; ``SpecError`` for a bad query: 400) and ``encode(item)``.
    """

    what = "streaming"

    def __init__(self, backends: Backends, config: WebConfig) -> None:
        self.backends = backends
        self.config = config
        self.active = 0
        self.rejected = 0
        self.served = 0
        self._subs: set[Subscription] = set()
        self._closing = False
        self._changed = asyncio.Condition()

    def unavailable(self) -> str | None:
        return None

    async def open(self, query: QueryParams, last_event_id: str | None) -> Subscription:
        raise NotImplementedError

    def encode(self, item: Any) -> bytes:
        raise NotImplementedError

    def close_all(self) -> None:
        self._closing = True
        for sub in list(self._subs):
            sub.close()

    async def wait_active(self, at_most: int) -> None:
        """Return once at most ``at_most`` streams are open (call on the loop)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.active <= at_most)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await _plain(send, 405, "method_not_allowed", "use GET", {"allow": "GET"})
            return
        why = self.unavailable()
        if why is not None or self._closing:
            await _plain(send, 503, "unavailable", why or f"{self.what} is not available on this node")
            return
        if self.active >= self.config.max_streams:
            self.rejected += 1
            await _plain(send, 503, "too_many_streams",
                         f"Service Unavailable: {self.config.max_streams} streams are open; retry later",
                         {"retry-after": str(RETRY_AFTER_S)})
            return
        headers = dict(scope["headers"])
        last_id = headers.get(b"last-event-id")
        self.active += 1  # counted from here: a stream opening counts against the limit
        try:
            try:
                sub = await self.open(QueryParams(scope.get("query_string", b"")),
                                      last_id.decode("latin-1") if last_id is not None else None)
            except SpecError as error:
                await _plain(send, 400, error.code, error.message)
                return
            await self._stream(sub, receive, send)
        finally:
            self.active -= 1
            async with self._changed:
                self._changed.notify_all()

    async def _stream(self, sub: Subscription, receive: Receive, send: Send) -> None:
        self._subs.add(sub)
        self.served += 1
        watcher = asyncio.create_task(self._watch(receive, sub))
        keepalive: asyncio.Task[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _OPENING, "more_body": True})
            keepalive = asyncio.create_task(self._keepalive(send, sub))
            async for item in sub:
                await send({"type": "http.response.body", "body": self.encode(item), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-send
        finally:
            sub.close()
            self._subs.discard(sub)
            tasks = [t for t in (watcher, keepalive) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _watch(receive: Receive, sub: Subscription) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                sub.close()
                return

    async def _keepalive(self, send: Send, sub: Subscription) -> None:
        try:
            while True:
                await asyncio.sleep(self.config.keepalive_s)
                await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})
        except OSError:
            sub.close()


class DiscoveryStream(SseEndpoint):
    """``GET /discoveries/stream`` (see the module docstring)."""

    what = "discovery streaming"

    def unavailable(self) -> str | None:
        return None if self.backends.discoveries is not None else "discovery streaming is not available on this node"

    async def open(self, query: QueryParams, last_event_id: str | None) -> Subscription:
        flt, after_seq = parse_filter(query, last_event_id)
        return self.backends.need_discoveries().subscribe(flt, after_seq=after_seq)

    def encode(self, item: Any) -> bytes:
        return encode_event(item)


async def _plain(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
