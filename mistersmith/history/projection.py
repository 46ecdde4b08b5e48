"""The projection: supervision events folded into one record per child. Pure, no I/O.

Supervision logic, not storage: it reads events (``EventLike``) from
whatever holds them and imports no store. The same fold serves three readers:
``tree_at`` (the tree and every agent's state at a moment, from the history
alone), the registry a store keeps beside its events (the PostgreSQL journal
folds each batch in the transaction that inserts it) and recovery planning
(``plan.py``, which reads that registry).

A record is keyed by ``(node_id, supervisor path, id)``. Its ``state`` is the
last thing observed (``running``, ``paused``, ``failed``, ``restarting``,
``stopped``, ``moving`` (stopped by a handoff or a lost lease, to run on
another node: still wanted, and not ended normally), or ``not_recovered``
after a ``recovery_failed``: a restarted node could not respawn it, e.g. its
kind was not registered; it stays wanted); its ``desired_state`` says
whether the node meant it to run:

========================================  ============================
``stopped`` event whose reason is          ``desired_state`` becomes
========================================  ============================
``shutdown: stopped on request``           ``stopped`` (stopped on purpose)
``not restarted (...)``                    ``stopped`` (its restart type said no)
``fenced: ...``                            ``stopped`` (a newer activation owns it)
``normal...`` (it stopped itself)          ``running`` if permanent, else ``stopped``
anything else (node or supervisor          unchanged: the supervisor decides next,
shutting down, a sibling's restart...)     and a node restart brings it back
========================================  ============================

Children a supervisor loses when it restarts: a supervisor that stopped (or
escalated) and then starts again in the same node run comes back with its
static children only; every descendant whose last event came before that
stop is marked ``stopped``/``stopped``. A root ``started`` begins a new node
run, after which recovery (not the supervisor) decides. A supervisor stopped
on purpose takes its descendants with it.

A record that is ``stopped`` and meant to be is dropped: recovery never needs
it and the store keeps its history. So memory is bounded by the children
alive at the moment projected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .record import AgentRecord, RecordKey
from .snapshot import TreeSnapshot

__all__ = ["EventLike", "Projection"]

_ON_PURPOSE = ("shutdown: stopped on request", "not restarted", "fenced")
# Stopped here to run elsewhere (a drain's handoff, a node that lost its lease): still wanted, and
# not ended normally either, so a transient agent comes back where it goes (state ``moving``).
MOVING = ("shutdown: handed over", "shutdown: node lease lost")
_STATES = {
    "failed": "failed",
    "restart_scheduled": "restarting",
    "paused": "paused",
    "resumed": "running",
    "intensity_exceeded": "failed",
    "escalated": "failed",
    "recovery_failed": "not_recovered",  # desired_state unchanged: a later start with its kind brings it back
}


class EventLike(Protocol):
    """What the fold reads of an event: a ``SupervisionEvent``, or the writer's ``JournalLine``."""

    @property
    def seq(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def node_id(self) -> str: ...
    @property
    def supervisor(self) -> str: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def event_type(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _is_under(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor + "/")


@dataclass
class Projection:
    """Folds events, in journal order, into ``records``; tracks what changed since ``take_changes``."""

    records: dict[RecordKey, AgentRecord] = field(default_factory=dict)
    _stops: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, supervisor path) -> seq of its stop
    _changed: set[RecordKey] = field(default_factory=set)
    _removed: set[RecordKey] = field(default_factory=set)
    last_seq: int = 0
    last_at: datetime | None = None

    def load(self, records: Iterable[AgentRecord]) -> None:
        """Start from known records (the registry) instead of from nothing."""
        for record in records:
            self.records[record.key] = record

    def apply(self, event: EventLike, journal_seq: int | None = None) -> None:
        """Fold one event; ``journal_seq`` (default ``event.seq``) is its seq in the journal."""
        seq = event.seq if journal_seq is None else journal_seq
        self.last_seq = seq
        self.last_at = event.occurred_at
        if event.agent_id is None:  # a supervisor's event about itself
            parent, name = _split(event.supervisor)
            key: RecordKey = (event.node_id, parent, name)
        else:
            key = (event.node_id, event.supervisor, event.agent_id)
        kind = event.event_type
        if kind in ("started", "restarted"):
            self._started(key, event, seq)
            return
        record = self.records.get(key)
        if record is None:
            return  # e.g. a start that failed: the child never existed
        record.last_event = kind
        record.last_seq = seq
        record.updated_at = event.occurred_at
        if event.reason is not None:
            record.reason = event.reason
        if kind == "stopped":
            reason = event.reason or ""
            record.state = "moving" if reason.startswith(MOVING) else "stopped"
            if reason.startswith(_ON_PURPOSE):
                record.desired_state = "stopped"
            elif reason.startswith("normal"):
                record.desired_state = "running" if record.restart == "permanent" else "stopped"
            if record.is_supervisor:
                self._stops[(event.node_id, record.path)] = seq
                if record.desired_state == "stopped":
                    self._end_children(record, f"stopped with supervisor {record.path}")
        elif kind in _STATES:
            record.state = _STATES[kind]
            if kind == "escalated":
                self._stops[(event.node_id, record.path)] = seq
        self._touch(record)

    def _started(self, key: RecordKey, event: EventLike, seq: int) -> None:
        data = dict(event.data)
        record = self.records.get(key)
        if record is None:
            record = AgentRecord(
                node_id=key[0], supervisor=key[1], agent_id=key[2], kind=event.kind or "?",
                restart=str(data.get("restart", "permanent")), spec=data, desired_state="running",
                state="running", incarnation=event.restart_count, reason=None, last_event=event.event_type,
                last_seq=seq, started_seq=seq, updated_at=event.occurred_at,
            )
            self.records[key] = record
        else:
            if event.kind:
                record.kind = event.kind
            if data:
                record.spec = data
                record.restart = str(data.get("restart", record.restart))
            record.desired_state = "running"
            record.state = "running"
            record.incarnation = event.restart_count
            record.reason = None
            record.last_event = event.event_type
            record.last_seq = seq
            record.updated_at = event.occurred_at
        self._removed.discard(key)
        self._changed.add(key)
        if record.is_supervisor:
            if not record.supervisor:  # the root: a new run of this node
                for stop_key in [k for k in self._stops if k[0] == record.node_id]:
                    del self._stops[stop_key]
            else:
                self._lose_children(record)

    def _lose_children(self, sup: AgentRecord) -> None:
        stopped_at = self._stops.pop((sup.node_id, sup.path), None)
        if stopped_at is not None:
            self._end_children(sup, f"lost when supervisor {sup.path} restarted", before_seq=stopped_at)

    def _end_children(self, sup: AgentRecord, reason: str, before_seq: int | None = None) -> None:
        for record in list(self.records.values()):
            if record.node_id != sup.node_id or not _is_under(record.supervisor, sup.path):
                continue
            if before_seq is not None and record.last_seq >= before_seq:
                continue
            record.state = "stopped"
            record.desired_state = "stopped"
            record.reason = reason
            self._touch(record)

    def _touch(self, record: AgentRecord) -> None:
        key = record.key
        if record.state == "stopped" and record.desired_state == "stopped":
            del self.records[key]
            self._changed.discard(key)
            self._removed.add(key)
        else:
            self._changed.add(key)

    def take_changes(self) -> tuple[list[AgentRecord], list[RecordKey]]:
        """Records changed and keys dropped since the last call (for the registry)."""
        changed = [self.records[k] for k in self._changed if k in self.records]
        removed = list(self._removed)
        self._changed.clear()
        self._removed.clear()
        return changed, removed

    def snapshot(self) -> TreeSnapshot:
        return TreeSnapshot(
            as_of_seq=self.last_seq,
            as_of=self.last_at,
            records=tuple(sorted(self.records.values(), key=lambda r: (r.node_id, r.started_seq))),
        )
