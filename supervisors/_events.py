"""Supervision events, the bus that numbers them, sinks and subscriptions.

Every lifecycle transition emits one immutable ``SupervisionEvent``. The bus
gives it the next ``seq`` (monotonic per node) and hands it, in ``seq``
order, to every sink and subscription. Sinks are pluggable: the in-memory
one ships here; the PostgreSQL journal plugs into the same ``EventSink``
interface.

Threads: ``emit`` runs in whatever thread makes the transition (an agent's or
a supervisor's). ``write`` runs inside the bus lock and must be quick; ``sync``
runs after it and may block until the event is durable: the emitting thread
waits for it before the transition's effect becomes visible (write-ahead).
Subscriptions get the event after that, in ``seq`` order; their callbacks run
in an emitting thread (not always the event's own) and must be quick.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mistersmith import tracing

__all__ = [
    "EVENT_TYPES",
    "EventBus",
    "EventSink",
    "MemorySink",
    "Subscription",
    "SupervisionEvent",
]

logger = logging.getLogger("mistersmith.events")

# The one vocabulary: journal column, NATS subject token and API value.
EVENT_TYPES: tuple[str, ...] = (
    "started",
    "stopped",
    "failed",
    "restarted",
    "restart_scheduled",
    "escalated",
    "intensity_exceeded",
    "shutdown_timeout",
    "paused",
    "resumed",
    "recovered",
    "recovery_failed",
    "state_restored",
    "fenced",
    "taken_over",
    "node_up",
    "node_down",
    "node_draining",
    "breaker_open",
)


@dataclass(frozen=True, slots=True)
class SupervisionEvent:
    """One supervision transition. ``supervisor`` is a path such as ``root/workers``."""

    event_id: uuid.UUID
    seq: int
    occurred_at: datetime
    node_id: str
    supervisor: str
    agent_id: str | None
    kind: str | None
    event_type: str
    reason: str | None = None
    restart_count: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    """The trace of the request that caused it (32 hex digits), when tracing is on and one did."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (UUID and time as strings)."""
        return {
            "event_id": str(self.event_id),
            "seq": self.seq,
            "occurred_at": self.occurred_at.isoformat(),
            "node_id": self.node_id,
            "supervisor": self.supervisor,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "event_type": self.event_type,
            "reason": self.reason,
            "restart_count": self.restart_count,
            "data": dict(self.data),
            "trace_id": self.trace_id,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SupervisionEvent:
        """The inverse of ``to_dict``."""
        return cls(
            event_id=uuid.UUID(raw["event_id"]),
            seq=int(raw["seq"]),
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            node_id=raw["node_id"],
            supervisor=raw["supervisor"],
            agent_id=raw.get("agent_id"),
            kind=raw.get("kind"),
            event_type=raw["event_type"],
            reason=raw.get("reason"),
            restart_count=int(raw.get("restart_count", 0)),
            data=dict(raw.get("data") or {}),
            trace_id=raw.get("trace_id"),
        )


class EventSink(Protocol):
    """Where events go. ``write`` is called in ``seq`` order, under the bus lock."""

    def write(self, event: SupervisionEvent) -> None:
        """Take the event; must not block."""
        ...

    def sync(self, event: SupervisionEvent) -> None:
        """Return once ``event`` is durable (no-op for volatile sinks)."""
        ...


class MemorySink:
    """Keeps the newest ``maxlen`` events in memory."""

    def __init__(self, maxlen: int | None = 10_000) -> None:
        self._events: deque[SupervisionEvent] = deque(maxlen=maxlen)

    def write(self, event: SupervisionEvent) -> None:
        self._events.append(event)

    def sync(self, event: SupervisionEvent) -> None:
        return None

    def events(
        self, *, agent_id: str | None = None, event_types: Collection[str] | None = None
    ) -> list[SupervisionEvent]:
        """The kept events, oldest first, optionally filtered."""
        return [
            e
            for e in list(self._events)
            if (agent_id is None or e.agent_id == agent_id)
            and (event_types is None or e.event_type in event_types)
        ]


class Subscription:
    """Events matching a filter, delivered to a callback or queued for ``get``.

    A queued subscription holds at most ``maxsize`` events; past that the
    oldest are dropped, counted in ``dropped`` and logged.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        agent_id: str | None,
        supervisor: str | None,
        event_types: Collection[str] | None,
        callback: Callable[[SupervisionEvent], None] | None,
        maxsize: int,
    ) -> None:
        self._bus = bus
        self.agent_id = agent_id
        self.supervisor = supervisor
        self.event_types = frozenset(event_types) if event_types is not None else None
        self._callback = callback
        self._queue: deque[SupervisionEvent] = deque()
        self._cond = threading.Condition()
        self.maxsize = maxsize
        self.dropped = 0
        self.closed = False

    def matches(self, event: SupervisionEvent) -> bool:
        return (
            (self.agent_id is None or event.agent_id == self.agent_id)
            and (self.supervisor is None or event.supervisor == self.supervisor)
            and (self.event_types is None or event.event_type in self.event_types)
        )

    def _offer(self, event: SupervisionEvent) -> None:
        if not self.matches(event):
            return
        if self._callback is not None:
            try:
                self._callback(event)
            except Exception:
                logger.exception("event subscriber callback raised; it stays subscribed")
            return
        with self._cond:
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.dropped += 1
                logger.warning("subscription full (%d events): dropped the oldest", self.maxsize)
            self._queue.append(event)
            self._cond.notify_all()

    def get(self, timeout_s: float) -> SupervisionEvent:
        """The next event; ``TimeoutError`` if none came within ``timeout_s``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self.closed, timeout_s):
                raise TimeoutError(f"no supervision event within {timeout_s:.2f} s")
            if not self._queue:
                raise queue.Empty("subscription closed")
            return self._queue.popleft()

    def wait_for(
        self, predicate: Callable[[SupervisionEvent], bool], timeout_s: float
    ) -> SupervisionEvent:
        """Skip events until one satisfies ``predicate``; ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self.closed, max(0.0, remaining))
                if not self._queue:
                    raise TimeoutError(f"no matching supervision event within {timeout_s:.2f} s")
                event = self._queue.popleft()
            if predicate(event):
                return event

    def __iter__(self) -> Iterator[SupervisionEvent]:
        """Yield events until the subscription is closed."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self.closed)
                if not self._queue:
                    return
                event = self._queue.popleft()
            yield event

    def close(self) -> None:
        self._bus._unsubscribe(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Numbers events and fans them out, in order, to sinks and subscriptions."""

    def __init__(self, node_id: str, first_seq: int = 1) -> None:
        self.node_id = node_id
        self._next_seq = first_seq
        self._next_delivery = first_seq
        self._lock = threading.Lock()
        self._delivery = threading.Lock()
        self._ready: dict[int, SupervisionEvent] = {}
        self._sinks: tuple[EventSink, ...] = ()
        self._subs: tuple[Subscription, ...] = ()

    def add_sink(self, sink: EventSink) -> None:
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def admit(self) -> None:
        """Ask each sink that can refuse new work (an ``admit()`` method) whether it takes it now.

        Called before a spawn, in the caller's thread; a sink that cannot make
        events durable (a spool on a full disk) raises its error, and the
        spawn fails with it before anything starts.
        """
        for sink in self._sinks:
            admit = getattr(sink, "admit", None)
            if admit is not None:
                admit()

    def subscribe(
        self,
        callback: Callable[[SupervisionEvent], None] | None = None,
        *,
        agent_id: str | None = None,
        supervisor: str | None = None,
        event_types: Collection[str] | None = None,
        maxsize: int = 10_000,
    ) -> Subscription:
        if event_types is not None:
            unknown = sorted(set(event_types) - set(EVENT_TYPES))
            if unknown:
                raise ValueError(f"event_types={unknown!r} are not event types; use: {', '.join(EVENT_TYPES)}")
        sub = Subscription(
            self, agent_id=agent_id, supervisor=supervisor, event_types=event_types,
            callback=callback, maxsize=maxsize,
        )
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def emit(
        self,
        event_type: str,
        *,
        supervisor: str,
        agent_id: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
        restart_count: int = 0,
        data: Mapping[str, Any] | None = None,
    ) -> SupervisionEvent:
        """Record one transition; returns once every sink holds it durably.

        Subscribers see the event only after that, and in ``seq`` order, so
        nothing outside the process observes an event a crash could lose.
        """
        event_id = uuid.uuid4()  # a syscall: outside the lock
        trace_id = tracing.current_trace_id()
        with self._lock:
            event = SupervisionEvent(
                event_id=event_id,
                seq=self._next_seq,
                occurred_at=datetime.now(UTC),
                node_id=self.node_id,
                supervisor=supervisor,
                agent_id=agent_id,
                kind=kind,
                event_type=event_type,
                reason=reason,
                restart_count=restart_count,
                data=data or {},
                trace_id=trace_id,
            )
            self._next_seq += 1
            sinks = self._sinks
            for sink in sinks:
                sink.write(event)
        try:
            commit = (tracing.span("journal.commit", attributes={"mistersmith.event_type": event_type,
                                                                 "mistersmith.seq": event.seq})
                      if tracing.enabled else tracing.OFF)  # a hot path: no attributes built while off
            with commit:
                for sink in sinks:
                    sink.sync(event)
        finally:
            self._deliver(event)
        logger.debug(
            "%s %s", event_type, agent_id or supervisor,
            extra={"agent_id": agent_id, "supervisor": supervisor, "event_type": event_type, "reason": reason},
        )
        return event

    @property
    def delivered_seq(self) -> int:
        """The ``seq`` of the last event handed to subscribers (0: none yet).

        Every event up to it is durable and was offered to every subscription
        that existed then; every later one will be offered to every
        subscription that exists now. So subscribe first, then read this, to
        split history from what is still to come (``EventStream``'s backlog).
        """
        with self._delivery:
            return self._next_delivery - 1

    def _deliver(self, event: SupervisionEvent) -> None:
        """Hand durable events to subscribers in ``seq`` order, without waiting.

        Whoever makes the next event in ``seq`` ready delivers it and every
        later one already durable; an emitter whose predecessor is still
        syncing just leaves its event for that one to deliver.
        """
        with self._delivery:
            self._ready[event.seq] = event
            while self._next_delivery in self._ready:
                ready = self._ready.pop(self._next_delivery)
                for sub in self._subs:
                    sub._offer(ready)
                self._next_delivery += 1
