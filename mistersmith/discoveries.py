"""``DiscoveryHub``: the node's in-process implementation of the ``Discoveries`` port.

It stores a discovery (through an injected ``DiscoveryStore``, the journal's
``discoveries`` table; without one it numbers them itself and keeps the
newest ``keep`` in memory), fans it out to live subscribers, then publishes
it (through an injected ``Publish``, the bridge's
``discoveries.{agent_id}.{type}``).

Everything runs on the node's event loop. Shares and ingests are serialised
(store, then fan-out) so that subscribers see ``seq`` in increasing order,
which is what makes ``Last-Event-ID`` resume gap-free: a subscriber that
resumes registers for live discoveries first, then reads the stored ones
after its ``seq``, then drops live ones it has already delivered. With
several nodes on one store, a discovery whose ``seq`` skips past ones this
hub has not seen yet (another node's, still on its way over NATS) first
brings those from the store, in order; the late copies are then ignored as
already seen. ``start()`` anchors a new hub at the store's last ``seq``, so
this holds from its first discovery on.

The hub sets each discovery's ``source``, whatever it carried: ``share``
makes it ``node:<node_id>`` (this node vouches for it), ``ingest`` (a NATS
message) ``nats:<node_id>`` (this node heard it; NATS does not say from
whom). An id is taken once: when the store already holds it (another node
sharing the database stored it before publishing, or a message reuses an
old id), the stored row is what is delivered, never the message's copy, and
one already delivered here (or stored before this hub started) is dropped.
A ``share`` whose id holds another discovery is refused (``SpecError``), and
so is an ``occurred_at`` more than ``MAX_AHEAD_S`` ahead of this node's clock.

A subscriber holds at most ``buffer_per_subscriber`` undelivered
discoveries. One that falls further behind is closed with ``overflowed``
set, never silently thinned: it resumes from its last ``seq``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mistersmith.discovery import DISCOVERY_TYPES, Discovery, DiscoveryFilter, refuse_future
from mistersmith.errors import SpecError
from mistersmith.ids import check_id
from mistersmith.ports import DiscoveryStore, Publish

__all__ = ["DiscoveryHub"]

logger = logging.getLogger("mistersmith.discoveries")

_PAGE = 500


class _Subscription:
    """One reader's live queue (plus, when resuming, the stored backlog before it)."""

    def __init__(self, hub: DiscoveryHub, flt: DiscoveryFilter, after_seq: int | None, maxsize: int) -> None:
        self._hub = hub
        self._flt = flt
        self._live: collections.deque[Discovery] = collections.deque()
        self._backlog: collections.deque[Discovery] = collections.deque()
        self._ready = asyncio.Event()
        self._maxsize = maxsize
        self._last = after_seq if after_seq is not None else 0
        self._catching_up = after_seq is not None
        self._closed = False
        self._overflowed = False

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, discovery: Discovery) -> None:
        """Called by the hub's fan-out, on the loop."""
        if self._closed or not self._flt.matches(discovery):
            return
        if len(self._live) >= self._maxsize:
            self._overflowed = True
            logger.warning("discovery subscriber fell %d behind; closed it (it resumes from seq %d)",
                           self._maxsize, self._last)
            self.close()
            return
        self._live.append(discovery)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[Discovery]:
        return self

    async def __anext__(self) -> Discovery:
        while True:
            if self._backlog:
                return self._deliver(self._backlog.popleft())
            if self._catching_up and not self._closed:
                page = await self._hub._load(self._flt, self._last, _PAGE)
                self._backlog.extend(d for d in page if d.seq is not None and d.seq > self._last)
                self._catching_up = len(page) >= _PAGE
                continue
            while self._live:
                discovery = self._live.popleft()
                if discovery.seq is None or discovery.seq > self._last:
                    return self._deliver(discovery)
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def _deliver(self, discovery: Discovery) -> Discovery:
        if discovery.seq is not None:
            self._last = discovery.seq
        return discovery

    async def next(self, timeout_s: float) -> Discovery:
        """The next discovery; ``TimeoutError`` after ``timeout_s``."""
        return await asyncio.wait_for(self.__anext__(), timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._forget(self)
            self._ready.set()


class DiscoveryHub:
    """Implements ``mistersmith.ports.Discoveries`` on the node's event loop.

    ``node_id`` names this node in the sources it sets; by default the store's
    ``node_id`` (``PgDiscoveryStore`` has one), else ``local``.
    """

    def __init__(
        self,
        *,
        store: DiscoveryStore | None = None,
        publish: Publish | None = None,
        keep: int = 10_000,
        buffer_per_subscriber: int = 1024,
        node_id: str | None = None,
    ) -> None:
        for key, value in (("keep", keep), ("buffer_per_subscriber", buffer_per_subscriber)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(None, key, value, "use an integer >= 1")
        if node_id is None:
            from_store = getattr(store, "node_id", None)
            node_id = from_store if isinstance(from_store, str) else "local"
        self.node_id = check_id(node_id, "node_id")
        self._shared_source = f"node:{node_id}"
        self._ingested_source = f"nats:{node_id}"
        self._store = store
        self._publish = publish
        self._buffer = buffer_per_subscriber
        self._recent: collections.deque[Discovery] = collections.deque(maxlen=keep)
        self._by_id: dict[str, Discovery] = {}
        self._subscribers: list[_Subscription] = []
        self._lock = asyncio.Lock()
        self._last_seq = 0
        self._anchored = False  # _last_seq is where this hub's view of the store starts (see start)
        self._total = 0
        self._by_type: collections.Counter[str] = collections.Counter()
        self._by_agent: collections.Counter[str] = collections.Counter()
        self.publish_errors = 0

    async def start(self) -> None:
        """With a store: start from its last ``seq``, so that even the first discovery this hub
        hears of is checked for earlier ones still on their way (see ``_catch_up``)."""
        if self._store is not None:
            async with self._lock:
                self._last_seq = max(self._last_seq, await self._store.last_seq())
                self._anchored = True

    # -- writing --------------------------------------------------------------------

    async def share(self, discovery: Discovery) -> Discovery:
        """Store, fan out, publish, vouched for by this node (``source`` ``node:<node_id>``).

        Sharing the same discovery again returns it as stored and publishes
        nothing. ``SpecError`` if its id holds another discovery, or its
        ``occurred_at`` is more than ``MAX_AHEAD_S`` ahead of this node's clock.
        A failed publish is logged and counted, not raised: the discovery is
        stored and was delivered here.
        """
        refuse_future(discovery, datetime.now(UTC))
        mine = replace(discovery, seq=None, source=self._shared_source)
        stored, delivered = await self._accept(mine)
        if replace(stored, seq=None) != mine:
            raise SpecError(None, "id", mine.id, "another discovery has this id; omit id to have a fresh one made")
        if delivered and self._publish is not None:
            try:
                await self._publish(stored)
            except Exception:
                self.publish_errors += 1
                logger.exception("publishing discovery %s failed", stored.id, extra={"agent_id": stored.agent_id})
        return stored

    async def ingest(self, discovery: Discovery) -> Discovery | None:
        """A discovery heard on NATS: store (as ``nats:<node_id>``, whatever it says) and fan out,
        not republish.

        When the store holds its id already (another node on this database
        stored it before publishing it), what is delivered and returned is the
        stored row, with its own source and content, never the message's.
        Returns ``None``, changing nothing, for an id already delivered here
        (our own, echoed back by NATS) or stored before this hub started.
        ``SpecError`` if its ``occurred_at`` is more than ``MAX_AHEAD_S`` ahead
        of this node's clock.
        """
        if discovery.id in self._by_id:
            return None
        refuse_future(discovery, datetime.now(UTC))
        stored, delivered = await self._accept(replace(discovery, seq=None, source=self._ingested_source))
        return stored if delivered else None

    async def _accept(self, discovery: Discovery) -> tuple[Discovery, bool]:
        """Store and fan out: the discovery as stored, and whether it was delivered just now
        (False: its id was known here, or stored before and delivered, or before this hub started)."""
        async with self._lock:
            known = self._by_id.get(discovery.id)
            if known is not None:
                return known, False
            if self._store is not None:
                stored = await self._store.persist(discovery)
                if stored.seq is None:  # a store always numbers what it returns
                    raise RuntimeError(f"the discovery store returned {stored.id} without a seq")
                seq = stored.seq
            else:
                seq = self._last_seq + 1
                stored = discovery.with_seq(seq)
            if self._anchored and seq <= self._last_seq:
                # A new row is numbered after every committed one, so this row was there before:
                # delivered here already (catch-up, or our own), or before this hub started.
                return stored, False
            if self._store is not None and self._anchored and self._last_seq < seq - 1:
                await self._catch_up(self._store, seq)
            self._last_seq = max(self._last_seq, seq)
            self._anchored = True
            self._fan_out(stored)
        return stored, True

    async def _catch_up(self, store: DiscoveryStore, seq: int) -> None:
        """Fan out the stored discoveries numbered between the last one seen here and ``seq`` first.

        NATS keeps each publisher's order, not a global one: another node's
        discovery can arrive after a later-numbered one. The store numbers in
        commit order (a writer lock), so every discovery below ``seq`` is
        already there; without this, subscribers that saw ``seq`` would drop
        the late one as already delivered.
        """
        after = self._last_seq
        while after < seq - 1:
            page = await store.load(DiscoveryFilter(), after_seq=after, limit=_PAGE)
            for missed in page:
                if missed.seq is None or missed.seq >= seq:
                    return
                if missed.id not in self._by_id:
                    self._fan_out(missed)
                self._last_seq = after = missed.seq
            if len(page) < _PAGE:
                return

    def _fan_out(self, stored: Discovery) -> None:
        self._remember(stored)
        for sub in list(self._subscribers):
            sub.offer(stored)

    def _remember(self, stored: Discovery) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._by_id.pop(self._recent[0].id, None)
        self._recent.append(stored)
        self._by_id[stored.id] = stored
        self._total += 1
        self._by_type[stored.discovery_type] += 1
        self._by_agent[stored.agent_id] += 1

    # -- reading --------------------------------------------------------------------

    async def get(self, discovery_id: str) -> Discovery | None:
        found = self._by_id.get(discovery_id)
        if found is None and self._store is not None:
            found = await self._store.get(discovery_id)
        return found

    async def query(self, flt: DiscoveryFilter, *, after_seq: int = 0, limit: int = 100) -> list[Discovery]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SpecError(None, "limit", limit, "use an integer >= 1")
        return await self._load(flt, after_seq, limit)

    async def _load(self, flt: DiscoveryFilter, after_seq: int, limit: int) -> list[Discovery]:
        if self._store is not None:
            return await self._store.load(flt, after_seq=after_seq, limit=limit)
        found: list[Discovery] = []
        for d in self._recent:
            if d.seq is not None and d.seq > after_seq and flt.matches(d):
                found.append(d)
                if len(found) >= limit:
                    break
        return found

    def subscribe(self, flt: DiscoveryFilter, *, after_seq: int | None = None) -> _Subscription:
        """Call on the loop. Without a store, resuming reaches back ``keep`` discoveries at most."""
        if after_seq is not None and (isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0):
            raise SpecError(None, "after_seq", after_seq, "use an integer >= 0")
        sub = _Subscription(self, flt, after_seq, self._buffer)
        self._subscribers.append(sub)
        return sub

    def _forget(self, sub: _Subscription) -> None:
        try:
            self._subscribers.remove(sub)
        except ValueError:
            pass

    def stats(self) -> dict[str, Any]:
        return {
            "total": self._total,
            "by_type": {t: self._by_type.get(t, 0) for t in DISCOVERY_TYPES},
            "by_agent": dict(self._by_agent),
            "subscribers": len(self._subscribers),
            "last_seq": self._last_seq,
            "publish_errors": self.publish_errors,
        }

    def close(self) -> None:
        """End every subscription (their readers see ``StopAsyncIteration``)."""
        for sub in list(self._subscribers):
            sub.close()
