"""The Runtime is the audit trail's funnel: every spawn, stop, restart, cancel and command send is
recorded for whoever acts (``mistersmith.audit.acting``; ``library`` by default), once, with its outcome;
the node's own work (``internal()``) is not."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mistersmith import Runtime
from mistersmith.audit import AuditEntry, acting, internal
from mistersmith.errors import SpecError, UnknownAgentError


class Recorded:
    """An in-memory ``AuditRecorder`` (the node's is ``mistersmith.journal.audit.AuditLog``)."""

    def __init__(self, record_commands: bool = True) -> None:
        self.record_commands = record_commands
        self.entries: list[AuditEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self.entries.append(entry)

    def seen(self) -> list[tuple[str, str, str, str, str]]:
        return [(e.door, e.actor, e.action, e.target, e.outcome) for e in self.entries]


def test_library_calls_are_recorded_with_their_outcome() -> None:
    recorded = Recorded()
    with Runtime() as rt:
        rt.audit = recorded
        rt.spawn("echo", "a1")
        assert rt.ask("a1", "echo", {"x": 1}, timeout=5) == {"x": 1}
        rt.send("a1", "echo")
        with pytest.raises(UnknownAgentError):
            rt.ask("ghost", "echo", timeout=5)
        with pytest.raises(SpecError):
            rt.spawn("no-such-kind", "a2")
        assert rt.cancel("a1", "no-such-call") is False
        rt.restart("a1")
        rt.stop("a1")
    assert recorded.seen() == [
        ("library", "library", "spawn", "a1", "ok"),
        ("library", "library", "command", "a1", "ok"),
        ("library", "library", "command", "a1", "ok"),
        ("library", "library", "command", "ghost", "unknown_agent"),
        ("library", "library", "spawn", "a2", "invalid_spec"),
        ("library", "library", "cancel", "a1", "not_running"),
        ("library", "library", "restart", "a1", "ok"),
        ("library", "library", "stop", "a1", "ok"),
    ]
    assert recorded.entries[1].detail == "echo" and recorded.entries[0].detail == "echo"


def test_a_state_reset_is_recorded_as_its_own_action_refused_or_done() -> None:
    recorded = Recorded()
    with Runtime() as rt:  # a bare Runtime keeps durable state in memory
        rt.audit = recorded
        rt.spawn("echo", "plain")
        rt.spawn("echo", "kept", durable=True)
        with pytest.raises(SpecError):
            rt.restart("plain", reset_state=True)

        async def reset() -> None:
            await rt.arestart("kept", reset_state=True)

        asyncio.run(reset())
    assert recorded.seen()[2:] == [
        ("library", "library", "state_reset", "plain", "invalid_spec"),
        ("library", "library", "state_reset", "kept", "ok"),
    ]


def test_a_door_names_the_actor_also_in_the_tasks_it_starts_and_internal_work_is_not_recorded() -> None:
    recorded = Recorded(record_commands=False)
    with Runtime() as rt:
        rt.audit = recorded

        async def door() -> None:
            with acting("nats", "nats", "ab" * 16):
                await asyncio.get_running_loop().create_task(rt.aspawn("echo", "a1"))
                await rt.aask("a1", "echo", timeout=5)  # command sends are off: not recorded
            with internal():
                await rt.aspawn("echo", "pool-1")
            await rt.astop("a1")

        asyncio.run(door())
    assert recorded.seen() == [("nats", "nats", "spawn", "a1", "ok"), ("library", "library", "stop", "a1", "ok")]
    assert recorded.entries[0].trace_id == "ab" * 16
