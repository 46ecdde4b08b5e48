"""Agents: commands, built-ins, failure semantics, exit signals, hung handlers, mailboxes."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from _helpers import WAIT_S, Gate, Worker, blocker_kind, end_incarnation, running, settle, token
from mistersmith import (
    Agent,
    AgentFailedError,
    CommandError,
    CommandTimeoutError,
    EchoAgent,
    FakeClock,
    InvalidPayloadError,
    MailboxFullError,
    PausedError,
    Runtime,
    StartError,
    ChildSpec,
    SupervisorSpec,
    UnknownAgentError,
    UnknownCommandError,
    command,
)
from mistersmith.actors import Exit
from mistersmith.supervisors import Supervisor


@pytest.fixture
def rt(clock: FakeClock) -> Iterator[Runtime]:
    with running(clock=clock, root=SupervisorSpec("root", intensity=20), kinds={"worker": Worker}) as runtime:
        yield runtime


# -- commands and built-ins -------------------------------------------------------


def test_builtins_answer(rt: Runtime) -> None:
    agent = rt.spawn("worker", "w", config={"x": 1})
    assert rt.ask(agent, "ping", timeout=WAIT_S) == {"pong": True, "agent_id": "w"}
    status = rt.ask(agent, "status", timeout=WAIT_S)
    assert status["agent_id"] == "w" and status["kind"] == "worker" and status["supervisor"] == "root"
    assert status["state"] == "idle" and status["paused"] is False and status["restart_count"] == 0
    assert {"status", "ping", "pause", "resume", "whoami", "exit"} <= set(status["commands"])
    assert rt.get_agent(agent)["config"] == {"x": 1}


def test_pause_rejects_work_and_still_answers_builtins(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    assert rt.ask(agent, "pause", timeout=WAIT_S)["paused"] is True
    assert rt.ask(agent, "pause", timeout=WAIT_S)["state"] == "paused"  # idempotent
    with pytest.raises(PausedError) as err:
        rt.ask(agent, "echo", {"a": 1}, timeout=WAIT_S)
    assert err.value.code == "paused" and err.value.command == "echo"
    assert "resume" in str(err.value)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    info = rt.get_agent(agent)
    assert info["paused"] is True and info["state"] == "paused"
    assert rt.ask(agent, "resume", timeout=WAIT_S)["paused"] is False
    assert rt.ask(agent, "resume", timeout=WAIT_S)["state"] == "idle"
    assert rt.ask(agent, "echo", {"a": 1}, timeout=WAIT_S) == {"a": 1}
    types = [e.event_type for e in rt.history(agent_id=agent)]
    assert types == ["started", "paused", "resumed"]
    assert rt.get_agent(agent)["restart_count"] == 0


def test_unknown_command_is_an_error_reply_not_a_crash(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    with pytest.raises(UnknownCommandError) as err:
        rt.ask(agent, "nope", timeout=WAIT_S)
    assert err.value.code == "unknown_command" and err.value.command == "nope"
    assert "whoami" in err.value.known and "ping" in err.value.known
    assert rt.ask(agent, "whoami", timeout=WAIT_S)["restart_count"] == 0
    assert rt.history(agent_id=agent, event_types=["failed"]) == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({}, "missing ['a']"),
        ({"b": 1}, "missing ['a']"),
        ({"a": 1, "c": 2}, "unexpected ['c']"),
        ({"a": "1"}, "a='1' should be int"),
        ({"a": True}, "a=True should be int"),
        ({"a": 1, "scale": "x"}, "should be int or float"),
    ],
)
def test_invalid_payload_is_refused_before_the_handler(rt: Runtime, payload: dict[str, Any], problem: str) -> None:
    agent = rt.spawn("worker")
    with pytest.raises(InvalidPayloadError) as err:
        rt.ask(agent, "add", payload, timeout=WAIT_S)
    assert err.value.code == "invalid_payload" and err.value.command == "add"
    assert problem in err.value.problem
    assert rt.ask(agent, "add", {"a": 1, "b": 2, "scale": 2}, timeout=WAIT_S) == 6
    assert rt.history(agent_id=agent, event_types=["failed"]) == []


def test_payload_must_be_a_json_object(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    with pytest.raises(InvalidPayloadError, match="JSON object"):
        rt.ask(agent, "echo", [1, 2], timeout=WAIT_S)  # type: ignore[arg-type]
    with pytest.raises(InvalidPayloadError):
        rt.send(agent, "echo", "text")  # type: ignore[arg-type]


def test_command_error_is_an_error_reply_and_the_agent_lives_on(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    before = token(rt, agent)
    with pytest.raises(CommandError) as err:
        rt.ask(agent, "refuse", timeout=WAIT_S)
    assert err.value.code == "refused"
    assert err.value.to_dict() == {"code": "refused", "message": "refused on purpose"}
    assert token(rt, agent) == before


def test_crash_gives_agent_failed_and_a_restart(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    before = token(rt, agent)

    def go() -> None:
        with pytest.raises(AgentFailedError) as err:
            rt.ask(agent, "exit", {"how": "crash"}, timeout=WAIT_S)
        assert err.value.code == "agent_failed" and err.value.agent_id == agent
        assert isinstance(err.value.__cause__, RuntimeError)
        assert "told to crash" in err.value.reason

    end_incarnation(rt, agent, go)
    assert token(rt, agent) != before
    assert [e.event_type for e in rt.history(agent_id=agent)] == ["started", "failed", "restarted"]
    failed = rt.history(agent_id=agent, event_types=["failed"])[0]
    assert failed.data["command"] == "exit" and "told to crash" in (failed.reason or "")


def test_ask_timeout_is_required_and_reported(rt: Runtime) -> None:
    assert inspect.signature(Runtime.ask).parameters["timeout"].default is inspect.Parameter.empty
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate))
    rt.send(agent, "block")
    assert gate.entered.wait(WAIT_S)
    with pytest.raises(CommandTimeoutError) as err:
        rt.ask(agent, "ping", timeout=0.05)
    assert isinstance(err.value, TimeoutError)
    assert err.value.agent_id == agent and err.value.command == "ping" and err.value.timeout_s == 0.05


# -- tell and ask fail the same way -------------------------------------------------


def test_tell_crash_restarts_like_ask(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    before = token(rt, agent)
    end_incarnation(rt, agent, lambda: rt.send(agent, "exit", {"how": "crash"}))
    assert token(rt, agent) != before
    assert rt.get_agent(agent)["restart_count"] == 1


@pytest.mark.parametrize(("name", "payload"), [("refuse", {}), ("nope", {}), ("add", {"a": "x"})])
def test_tell_expected_errors_do_not_crash(rt: Runtime, name: str, payload: dict[str, Any]) -> None:
    agent = rt.spawn("worker")
    before = token(rt, agent)
    rt.send(agent, name, payload)
    assert token(rt, agent) == before  # the ask queues after the tell: a round trip
    assert rt.history(agent_id=agent, event_types=["failed"]) == []


def test_queued_commands_survive_a_restart(rt: Runtime) -> None:
    """The mailbox belongs to the agent, not the incarnation (as in Akka)."""
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate))
    rt.send(agent, "block_hard")
    assert gate.entered.wait(WAIT_S)
    rt.send(agent, "exit", {"how": "crash"})
    rt.send(agent, "record", {"value": 1})
    rt.send(agent, "record", {"value": 2})
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as sub:
        gate.release.set()
        sub.get(WAIT_S)
    assert rt.ask(agent, "recorded", timeout=WAIT_S) == [1, 2]


# -- exactly one exit signal per incarnation ------------------------------------------


@pytest.fixture
def exit_signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Agent, Exit]]:
    """Every exit signal a supervisor receives, with its incarnation."""
    signals: list[tuple[Agent, Exit]] = []
    original = Supervisor._exit_signal

    def counting(self: Supervisor, incarnation: Agent, exit_: Exit) -> None:
        signals.append((incarnation, exit_))
        original(self, incarnation, exit_)

    monkeypatch.setattr(Supervisor, "_exit_signal", counting)
    return signals


def signals_of(signals: list[tuple[Agent, Exit]], incarnation: Agent) -> list[str]:
    return [exit_.kind for inc, exit_ in signals if inc is incarnation]


class HookFailures(Worker):
    """Hooks that raise when the config says so."""

    def on_stop(self) -> None:
        if self.config.get("stop"):
            raise RuntimeError("on_stop failed")

    def on_failure(self, *exc_info: Any) -> None:
        if self.config.get("failure"):
            raise RuntimeError("on_failure failed")


@pytest.mark.parametrize(
    ("config", "how", "kind"),
    [
        ({}, "normal", "normal"),
        ({}, "shutdown", "shutdown"),
        ({}, "crash", "crash"),
        ({"stop": True}, "normal", "crash"),  # on_stop raising makes the exit a crash
        ({"failure": True}, "crash", "crash"),  # on_failure raising changes nothing
    ],
)
def test_one_exit_signal_per_incarnation(
    rt: Runtime, exit_signals: list[tuple[Agent, Exit]], config: dict[str, Any], how: str, kind: str
) -> None:
    agent = rt.spawn(HookFailures, "h", config=config, restart="transient")
    old = rt.system.agents[agent].incarnation
    assert old is not None

    def go() -> None:
        if how == "crash":
            with pytest.raises(AgentFailedError):
                rt.ask(agent, "exit", {"how": how}, timeout=WAIT_S)
        else:
            rt.ask(agent, "exit", {"how": how}, timeout=WAIT_S)

    end_incarnation(rt, agent, go)
    assert signals_of(exit_signals, old) == [kind]
    # A transient child comes back exactly when the exit was a crash.
    assert (rt.get_agent(agent)["state"] == "idle") == (kind == "crash")
    if config.get("stop"):
        assert rt.history(agent_id=agent, event_types=["failed"])[0].data == {"phase": "stop"}
    assert all(n == 1 for n in Counter(id(inc) for inc, _ in exit_signals).values())


def test_one_exit_signal_when_on_start_raises(rt: Runtime, exit_signals: list[tuple[Agent, Exit]]) -> None:
    incarnations: list[Agent] = []

    class BadStart(Worker):
        def on_start(self) -> None:
            incarnations.append(self)
            raise ValueError("no")

    with pytest.raises(StartError):
        rt.spawn(BadStart, "b")
    [inc] = incarnations
    assert inc.thread is not None
    inc.thread.join(WAIT_S)
    settle(rt)
    assert signals_of(exit_signals, inc) == ["crash"]
    assert rt.history(agent_id="b", event_types=["started", "stopped", "restarted"]) == []


def test_one_exit_signal_when_on_stop_raises_during_stop(rt: Runtime, exit_signals: list[tuple[Agent, Exit]]) -> None:
    agent = rt.spawn(HookFailures, "h", config={"stop": True})
    old = rt.system.agents[agent].incarnation
    assert old is not None and old.thread is not None
    rt.stop(agent)
    old.thread.join(WAIT_S)
    settle(rt)
    assert signals_of(exit_signals, old) == ["crash"]
    with pytest.raises(UnknownAgentError):
        rt.get_agent(agent)


def test_one_exit_signal_per_failed_restart(rt: Runtime, exit_signals: list[tuple[Agent, Exit]]) -> None:
    incarnations: list[Agent] = []

    class Fragile(Worker):
        def on_start(self) -> None:
            incarnations.append(self)
            if self.context.restart_count:
                raise RuntimeError("cannot come back")

    rt.add_supervisor(SupervisorSpec("s", intensity=3, restart="temporary", children=(ChildSpec("f", Fragile),)))
    with rt.subscribe(event_types=["escalated"]) as sub:
        with pytest.raises(AgentFailedError):
            rt.ask("f", "exit", {"how": "crash"}, timeout=WAIT_S)
        sub.get(WAIT_S)
    assert len(incarnations) == 4  # the first, then three restarts that failed to start
    for inc in incarnations:
        assert inc.thread is not None
        inc.thread.join(WAIT_S)
    assert [signals_of(exit_signals, inc) for inc in incarnations] == [["crash"]] * 4


# -- BaseException never escapes an actor -----------------------------------------------


class Rude(Worker):
    @command("raise_base")
    def raise_base(self, what: str) -> None:
        raise {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit, "GeneratorExit": GeneratorExit}[what]()

    def on_start(self) -> None:
        if self.config.get("start"):
            raise SystemExit(3)

    def on_stop(self) -> None:
        if self.config.get("stop"):
            raise KeyboardInterrupt


@pytest.mark.parametrize("what", ["KeyboardInterrupt", "SystemExit", "GeneratorExit"])
def test_base_exception_in_a_handler_stays_in_its_actor(rt: Runtime, what: str) -> None:
    bystander = rt.spawn("worker", "bystander")
    bystander_token = token(rt, bystander)
    agent = rt.spawn(Rude, "rude")

    def go() -> None:
        with pytest.raises(AgentFailedError) as err:
            rt.ask(agent, "raise_base", {"what": what}, timeout=WAIT_S)
        assert type(err.value.__cause__).__name__ == what

    end_incarnation(rt, agent, go)
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    assert rt.get_agent(agent)["restart_count"] == 1
    assert token(rt, bystander) == bystander_token
    assert any(ref.is_alive() for ref in pykka.ActorRegistry.get_all())


def test_base_exception_in_hooks_stays_in_its_actor(rt: Runtime) -> None:
    bystander = rt.spawn("worker", "bystander")
    with pytest.raises(StartError) as err:
        rt.spawn(Rude, "r1", config={"start": True})
    assert isinstance(err.value.__cause__, SystemExit)
    agent = rt.spawn(Rude, "r2", config={"stop": True})
    end_incarnation(rt, agent, lambda: rt.ask(agent, "exit", {"how": "normal"}, timeout=WAIT_S))
    assert rt.get_agent(agent)["restart_count"] == 1
    assert rt.ask(bystander, "ping", timeout=WAIT_S)["pong"] is True


# -- lifecycle states, readable while the agent is busy ---------------------------------


class Slow(Worker):
    """on_start and on_stop wait for their gates (class attributes set per test)."""

    starting: Gate
    stopping: Gate

    def on_start(self) -> None:
        self.starting.enter()
        self.starting.release.wait(WAIT_S)

    def on_stop(self) -> None:
        self.stopping.enter()
        self.stopping.release.wait(WAIT_S)


def slow_kind() -> type[Slow]:
    return type("SlowGated", (Slow,), {"starting": Gate(), "stopping": Gate()})


def in_thread(fn: Any, results: list[Any]) -> threading.Thread:
    def target() -> None:
        try:
            results.append(fn())
        except BaseException as exc:  # reported by the caller's assertions
            results.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_state_starting_then_idle_then_busy(rt: Runtime) -> None:
    kind = slow_kind()
    kind.stopping.release.set()
    results: list[Any] = []
    spawner = in_thread(lambda: rt.spawn(kind, "s"), results)
    try:
        assert kind.starting.entered.wait(WAIT_S)
        assert rt.get_agent("s")["state"] == "starting"
        assert results == []  # spawn returns only after on_start
    finally:
        kind.starting.release.set()
    spawner.join(WAIT_S)
    assert results == ["s"]
    assert rt.get_agent("s")["state"] == "idle"


def test_state_stopping_when_the_agent_stops_itself(rt: Runtime) -> None:
    kind = slow_kind()
    kind.starting.release.set()
    rt.spawn(kind, "s", restart="transient")
    rt.ask("s", "exit", {"how": "normal"}, timeout=WAIT_S)
    try:
        assert kind.stopping.entered.wait(WAIT_S)
        assert rt.get_agent("s")["state"] == "stopping"
    finally:
        kind.stopping.release.set()


def test_state_stopping_while_stopped_by_its_supervisor(rt: Runtime) -> None:
    """While ``on_stop`` runs after ``stop()``, the agent is stopping, not yet stopped."""
    kind = slow_kind()
    kind.starting.release.set()
    rt.spawn(kind, "s")
    results: list[Any] = []
    stopper = in_thread(lambda: rt.stop("s"), results)
    try:
        assert kind.stopping.entered.wait(WAIT_S)
        assert rt.get_agent("s")["state"] == "stopping"
    finally:
        kind.stopping.release.set()
        stopper.join(WAIT_S)
    assert results == [None]


# -- hung handlers ---------------------------------------------------------------------


def test_hung_handler_is_abandoned_counted_and_the_agent_restarted(
    rt: Runtime, clock: FakeClock, exit_signals: list[tuple[Agent, Exit]]
) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate), "h", command_timeout_s=1.0)
    old = rt.system.agents[agent].incarnation
    outcome: list[BaseException | None] = []

    def caller() -> None:
        try:
            rt.ask(agent, "block_hard", timeout=WAIT_S)
            outcome.append(None)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        assert gate.entered.wait(WAIT_S)
        clock.advance(0.5)  # within command_timeout_s: nothing happens
        assert rt.history(agent_id=agent, event_types=["failed"]) == []
        assert rt.stats()["leaked_threads"] == 0
        with rt.subscribe(agent_id=agent, event_types=["restarted"]) as sub:
            clock.advance(0.6)  # past it: the watchdog abandons the incarnation
            sub.get(WAIT_S)
        thread.join(WAIT_S)
        [error] = outcome
        assert isinstance(error, AgentFailedError)
        assert "command_timeout_s=1.0" in error.reason
        failed = rt.history(agent_id=agent, event_types=["failed"])[0]
        assert failed.data == {"command": "block_hard", "hung": True}
        assert rt.stats()["leaked_threads"] == 1
        assert rt.stats()["abandoned_threads"] == 1
        assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
        assert rt.get_agent(agent)["restart_count"] == 1
    finally:
        gate.release.set()
    assert gate.join_all()
    assert rt.stats()["leaked_threads"] == 0
    assert rt.stats()["abandoned_threads"] == 1
    assert old is not None and signals_of(exit_signals, old) == ["crash"]
    assert rt.ask(agent, "ping", timeout=WAIT_S)["pong"] is True  # the new incarnation is untouched


def test_echo_hang_sent_by_tell_is_detected_too(rt: Runtime, clock: FakeClock) -> None:
    gate = Gate()

    class Echo(EchoAgent):
        @command("hang")
        def hang(self, seconds: float = 3600.0) -> dict[str, Any]:
            gate.enter()
            return super().hang(seconds)

    agent = rt.spawn(Echo, command_timeout_s=0.5)
    rt.send(agent, "hang")
    assert gate.entered.wait(WAIT_S)
    with rt.subscribe(agent_id=agent, event_types=["restarted"]) as restarted:
        clock.advance(0.6)
        restarted.get(WAIT_S)
    [failed] = rt.history(agent_id=agent, event_types=["failed"])
    assert failed.data["hung"] is True
    assert rt.ask(agent, "echo", {"ok": 1}, timeout=WAIT_S) == {"ok": 1}
    assert gate.join_all()  # echo's hang gives up once its incarnation is abandoned
    assert rt.stats()["leaked_threads"] == 0


def test_echo_kind(rt: Runtime) -> None:
    agent = rt.spawn("echo")
    assert rt.ask(agent, "echo", {"a": [1, {"b": None}]}, timeout=WAIT_S) == {"a": [1, {"b": None}]}
    with pytest.raises(AgentFailedError, match="boom"):
        rt.ask(agent, "fail", {"message": "boom"}, timeout=WAIT_S)
    assert {"echo", "fail", "hang"} <= set(rt.ask(agent, "status", timeout=WAIT_S)["commands"])


def test_slow_start_is_abandoned_and_its_thread_ends(rt: Runtime) -> None:
    """An incarnation whose on_start outlives start_timeout_s is abandoned for good.

    When its on_start finally returns it must end: not emit ``started``, not
    go on to wait on (or serve) the mailbox, not stay counted as leaked.
    """
    gate = Gate()
    incarnations: list[Agent] = []

    class SlowStart(Worker):
        def on_start(self) -> None:
            incarnations.append(self)
            gate.enter()
            gate.release.wait(WAIT_S)

    with pytest.raises(StartError, match="start_timeout_s"):
        rt.spawn(SlowStart, "slow", start_timeout_s=0.05)
    assert rt.stats()["abandoned_threads"] == 1
    gate.release.set()
    try:
        assert gate.join_all(1.0), "the abandoned incarnation kept running after its on_start returned"
        assert rt.history(agent_id="slow", event_types=["started"]) == []
        assert rt.stats()["leaked_threads"] == 0
    finally:
        for inc in incarnations:  # do not leak the thread if the assertion above failed
            inc.request_stop(Exit.shutdown("test cleanup"))
        gate.join_all()


def test_slow_restart_is_abandoned_and_never_serves_the_mailbox(rt: Runtime) -> None:
    """A restart whose on_start times out is retried; the abandoned try must not come back to life."""
    gate = Gate()
    incarnations: list[Agent] = []

    class SlowRestart(Worker):
        def on_start(self) -> None:
            incarnations.append(self)
            if self.context.restart_count == 1:
                gate.enter()
                gate.release.wait(WAIT_S)

    agent = rt.spawn(SlowRestart, "sr", start_timeout_s=0.5)
    problems: list[str] = []
    try:
        with rt.subscribe(agent_id=agent, event_types=["restarted"]) as sub:
            with pytest.raises(AgentFailedError):
                rt.ask(agent, "exit", {"how": "crash"}, timeout=WAIT_S)
            assert sub.get(WAIT_S).restart_count >= 2  # a retry after the abandoned try
            live = token(rt, agent)
            gate.release.set()
            try:
                late = sub.get(0.5)
                problems.append(f"the abandoned incarnation emitted {late.event_type!r}")
            except TimeoutError:
                pass
        for _ in range(20):
            try:
                answer = rt.ask(agent, "whoami", timeout=WAIT_S)["token"]
            except CommandTimeoutError:
                problems.append("a command to the agent was swallowed without a reply")
                break
            if answer != live:
                problems.append("another incarnation answered a command for the agent")
                break
        if not gate.join_all(WAIT_S):
            problems.append("the abandoned incarnation kept running after its on_start returned")
        assert not problems, "; ".join(problems)
    finally:
        gate.release.set()
        for inc in incarnations:  # wakes every reader of the shared mailbox, zombie included
            inc.request_stop(Exit.shutdown("test cleanup"))
        gate.join_all()


# -- bounded mailboxes and dead letters ---------------------------------------------------


def test_mailbox_overflow_is_refused_and_counted(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate), mailbox_size=2)
    try:
        rt.send(agent, "block_hard")
        assert gate.entered.wait(WAIT_S)
        rt.send(agent, "record", {"value": 1})
        rt.send(agent, "mark")
        with pytest.raises(MailboxFullError) as err:
            rt.send(agent, "record", {"value": 3})
        assert err.value.code == "mailbox_full" and err.value.limit == 2 and err.value.agent_id == agent
        with pytest.raises(MailboxFullError):
            rt.ask(agent, "ping", timeout=WAIT_S)
        stats = rt.stats()
        assert stats["mailbox_full"] == 2 and stats["dead_letters"] == 2
    finally:
        gate.release.set()
    assert gate.marked.wait(WAIT_S)  # the queued messages were handled, in order
    assert rt.ask(agent, "recorded", timeout=WAIT_S) == [1]


def test_default_mailbox_limit_is_10000(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    assert rt.system.agents[agent].context.mailbox.limit == 10_000


def test_messages_for_unknown_agents_are_dead_letters(rt: Runtime) -> None:
    with pytest.raises(UnknownAgentError):
        rt.send("ghost", "ping")
    with pytest.raises(UnknownAgentError):
        rt.ask("ghost", "ping", timeout=WAIT_S)
    assert rt.stats()["dead_letters"] == 2


def test_commands_queued_when_an_agent_stops_are_answered_as_dead_letters(rt: Runtime) -> None:
    gate = Gate()
    agent = rt.spawn(blocker_kind(gate))
    rt.send(agent, "block")  # ends when the incarnation is cancelled
    assert gate.entered.wait(WAIT_S)

    async def main() -> None:
        queued = rt.ask_future(agent, "ping", timeout=WAIT_S)  # queued now, behind "block"
        rt.send(agent, "record", {"value": 1})
        await rt.astop(agent)
        with pytest.raises(UnknownAgentError):
            await queued

    asyncio.run(main())
    assert rt.stats()["dead_letters"] == 2
    with pytest.raises(UnknownAgentError):
        rt.send(agent, "ping")
    assert rt.stats()["dead_letters"] == 3


# -- ordering and restarts under load ------------------------------------------------------


def test_no_command_is_lost_across_restarts(rt: Runtime, clock: FakeClock) -> None:
    agent = rt.spawn("worker")
    for i in range(30):
        clock.advance(1.0)  # keeps the root's restart window (20 in 5 s) from filling up
        rt.send(agent, "exit", {"how": "crash"})
        assert rt.ask(agent, "echo", {"i": i}, timeout=WAIT_S) == {"i": i}
    assert rt.get_agent(agent)["restart_count"] == 30


def test_each_senders_order_is_kept(rt: Runtime) -> None:
    agent = rt.spawn("worker")
    senders, per_sender = 4, 300

    def send_all(sender: int) -> None:
        for i in range(per_sender):
            rt.send(agent, "record", {"value": sender * 100_000 + i})

    threads = [threading.Thread(target=send_all, args=(s,)) for s in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    got = rt.ask(agent, "recorded", timeout=WAIT_S)
    assert len(got) == senders * per_sender
    for s in range(senders):
        assert [v % 100_000 for v in got if v // 100_000 == s] == list(range(per_sender))


def test_init_failure_is_a_start_error(rt: Runtime) -> None:
    class BadInit(Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            raise LookupError("no config")

    with pytest.raises(StartError) as err:
        rt.spawn(BadInit, "bi")
    assert isinstance(err.value.__cause__, LookupError)
    assert rt.history(agent_id="bi", event_types=["failed"])[0].data == {"phase": "init"}
    assert rt.list_agents() == []


def test_hung_handler_on_the_real_clock(real_runtime: Runtime) -> None:
    gate = Gate()
    agent = real_runtime.spawn(blocker_kind(gate), command_timeout_s=0.2)
    try:
        with pytest.raises(AgentFailedError, match="command_timeout_s=0.2"):
            real_runtime.ask(agent, "block_hard", timeout=WAIT_S)
        assert real_runtime.ask(agent, "ping", timeout=WAIT_S)["pong"] is True
    finally:
        gate.release.set()
    assert gate.join_all()


def test_a_stalled_journal_does_not_freeze_other_supervisors_timers(clock: FakeClock) -> None:
    """The watchdog runs on the clock: it only tells the hung agent's supervisor, which emits.
    A sink stalled on that `failed` event must not hold back another supervisor's backoff."""
    from mistersmith import Backoff, ChildSpec

    stalled, unstall = threading.Event(), threading.Event()

    class StallOnHang:
        def write(self, event: Any) -> None:
            pass

        def sync(self, event: Any) -> None:
            if event.event_type == "failed" and event.data.get("hung"):
                stalled.set()
                unstall.wait(WAIT_S * 3)  # longer than the test waits for the clock below

    gate = Gate()
    rt = Runtime(clock=clock, sinks=[StallOnHang()], root=SupervisorSpec("root", intensity=100),
                 kinds={"blocker": blocker_kind(gate), "worker": Worker})
    advancing: threading.Thread | None = None
    try:
        rt.add_supervisor(SupervisorSpec("s1", intensity=10, children=(
            ChildSpec("hangs", "blocker", command_timeout_s=1.0),)))
        rt.add_supervisor(SupervisorSpec("s2", intensity=10, children=(
            ChildSpec("backs-off", "worker", backoff=Backoff(min_s=0.5, max_s=0.5, jitter=0.0)),)))
        rt.send("hangs", "block_hard")
        assert gate.entered.wait(WAIT_S)
        def crash() -> None:
            with pytest.raises(AgentFailedError):
                rt.ask("backs-off", "exit", {"how": "crash"}, timeout=WAIT_S)

        end_incarnation(rt, "backs-off", crash)  # its restart is scheduled (0.5 s) before time moves
        assert clock.pending()
        advancing = threading.Thread(target=clock.advance, args=(2.0,), name="test-advance")
        advancing.start()
        advancing.join(WAIT_S)
        assert not advancing.is_alive(), "a timer callback waited on the journal"
        assert stalled.wait(WAIT_S)  # ... while the hung agent's `failed` event is stuck in the sink
        assert rt.ask("backs-off", "ping", timeout=WAIT_S)["pong"] is True  # restarted on time
        assert rt.get_agent("backs-off")["restart_count"] == 1
    finally:
        unstall.set()
        gate.release.set()
        if advancing is not None:
            advancing.join(WAIT_S)
        rt.close()
    assert gate.join_all()
