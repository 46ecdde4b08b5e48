"""Spans of the command path in one process, with an in-memory exporter (``mistersmith.tracing``).

The agent's ``agent.command`` span is current inside the handler (the user's
own spans nest under it), an event the command causes carries its trace id,
and the wait for that event's durability is a ``journal.commit`` span under it.
Tracing off makes no span at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _helpers import WAIT_S, running
from mistersmith import Agent, AgentFailedError, Runtime, SupervisorSpec, command, tracing

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    tracing.configure_exporter(EXPORTER, batch=False)
    EXPORTER.clear()
    try:
        yield EXPORTER
    finally:
        tracing.disable()
        EXPORTER.clear()


class Traced(Agent):
    kind = "traced"

    @command
    def work(self) -> str:
        with trace.get_tracer("user").start_as_current_span("user.step"):
            return "done"

    @command
    async def awork(self) -> str:
        with trace.get_tracer("user").start_as_current_span("user.async_step"):
            await asyncio.sleep(0)
            return "done"

    @command
    def crash(self) -> None:
        raise RuntimeError("boom")


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


@pytest.mark.parametrize("cmd,user_span", [("work", "user.step"), ("awork", "user.async_step")])
def test_the_command_span_is_current_in_the_handler_sync_and_async(
    spans: InMemorySpanExporter, cmd: str, user_span: str
) -> None:
    with running(root=SupervisorSpec("root", intensity=10, backoff=None)) as rt:
        agent = rt.spawn(Traced, "t")
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            assert rt.ask(agent, cmd, timeout=WAIT_S) == "done"
    got = by_name(spans)
    [command_span] = got[f"agent.command {cmd}"]
    [user] = got[user_span]
    assert command_span.parent is not None and command_span.parent.span_id == caller.get_span_context().span_id
    assert user.parent is not None and user.parent.span_id == command_span.context.span_id
    assert command_span.attributes["mistersmith.agent_id"] == "t"
    assert command_span.attributes["mistersmith.kind"] == "traced"
    assert command_span.attributes["mistersmith.outcome"] == "ok"
    assert [e.name for e in command_span.events] == ["started"]


def test_a_crash_event_carries_the_trace_and_its_journal_commit_nests_under_the_command(
    spans: InMemorySpanExporter,
) -> None:
    with running(root=SupervisorSpec("root", intensity=10, backoff=None)) as rt:
        agent = rt.spawn(Traced, "t")
        with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
            with pytest.raises(AgentFailedError):
                rt.ask(agent, "crash", timeout=WAIT_S)
            restarted.get(WAIT_S)
        [command_span] = by_name(spans)["agent.command crash"]
        trace_id = format(command_span.context.trace_id, "032x")
        failed = rt.history(agent_id=agent, event_types=["failed"])
        assert [e.trace_id for e in failed] == [trace_id]
        [restart] = rt.history(agent_id=agent, event_types=["restarted"])
        assert restart.trace_id == trace_id  # the supervisor's events join the crash's trace
        assert restart.to_dict()["trace_id"] == trace_id
    assert command_span.attributes["mistersmith.outcome"] == "crash"
    commits = [s for s in by_name(spans)["journal.commit"] if s.context.trace_id == command_span.context.trace_id]
    assert any(s.parent is not None and s.parent.span_id == command_span.context.span_id for s in commits)


def test_tracing_off_makes_no_span_and_events_carry_no_trace() -> None:
    EXPORTER.clear()
    assert tracing.enabled is False
    with running() as rt:
        agent = rt.spawn(Traced, "t")
        assert rt.ask(agent, "work", timeout=WAIT_S) == "done"
        assert all(e.trace_id is None for e in rt.history(agent_id=agent))
    assert [s.name for s in EXPORTER.get_finished_spans()] == ["user.step"]  # the user's own, not ours
