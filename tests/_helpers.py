"""Shared agent kinds and synchronisation helpers for the runtime-core tests.

Nothing here sleeps to synchronise. Tests wait on ``threading.Event``s with
timeouts, on supervision events, or on a round trip through a supervisor's
mailbox (``settle``): a supervisor handles its mailbox in order, so once a
call queued after an exit signal comes back, that exit has been handled.
"""

from __future__ import annotations

import os
import select
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pykka import messages as pykka_messages

from mistersmith import Agent, CommandError, Runtime, command

WAIT_S = 10.0
"""Upper bound of every wait in the suite; a healthy run never gets near it."""


class Worker(Agent):
    """A well-behaved agent whose every incarnation has its own token."""

    kind = "worker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = uuid.uuid4().hex
        self.handled: list[Any] = []

    @command("whoami")
    def whoami(self) -> dict[str, Any]:
        return {"token": self.token, "restart_count": self.context.restart_count}

    @command("echo")
    def echo(self, **payload: Any) -> dict[str, Any]:
        return payload

    @command("record")
    def record(self, value: int) -> None:
        self.handled.append(value)

    @command("recorded")
    def recorded(self) -> list[Any]:
        return list(self.handled)

    @command("exit")
    def do_exit(self, how: str) -> dict[str, str]:
        """End this incarnation: ``normal`` or ``shutdown`` (OTP exits), or ``crash``."""
        if how == "crash":
            raise RuntimeError("told to crash")
        self.exit(how)
        return {"exiting": how}

    @command("refuse")
    def refuse(self) -> None:
        raise CommandError("refused on purpose", code="refused")

    @command("add")
    def add(self, a: int, b: int = 0, scale: float = 1.0) -> float:
        return (a + b) * scale


class Gate:
    """Events a test uses to hold and watch a handler (or hook) in an agent thread."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.marked = threading.Event()
        self.threads: list[threading.Thread] = []

    def enter(self) -> None:
        self.threads.append(threading.current_thread())
        self.entered.set()

    def join_all(self, timeout_s: float = WAIT_S) -> bool:
        """True once every thread that entered has ended."""
        for thread in self.threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in self.threads)


def blocker_kind(gate: Gate) -> type[Worker]:
    """A Worker with two blocking commands tied to ``gate``.

    ``block`` waits until the incarnation is cancelled (a cooperative handler);
    ``block_hard`` ignores cancellation and waits for ``gate.release`` only.
    """

    class Blocker(Worker):
        kind = "blocker"

        @command("block")
        def block(self) -> dict[str, bool]:
            gate.enter()
            return {"cancelled": self.cancelled.wait(WAIT_S)}

        @command("block_hard")
        def block_hard(self) -> dict[str, bool]:
            gate.enter()
            return {"released": gate.release.wait(WAIT_S)}

        @command("mark")
        def mark(self) -> None:
            gate.marked.set()

    return Blocker


def recording_kind(log: list[tuple[str, str]], *, fail_start: frozenset[str] = frozenset()) -> type[Worker]:
    """A Worker that logs ``("start"|"stop"|"failure", id)`` from its hooks.

    Agents whose id is in ``fail_start`` raise in ``on_start``.
    """

    class Recording(Worker):
        kind = "recording"

        def on_start(self) -> None:
            if self.agent_id in fail_start:
                log.append(("start_failed", self.agent_id))
                raise RuntimeError(f"{self.agent_id} refuses to start")
            log.append(("start", self.agent_id))

        def on_stop(self) -> None:
            log.append(("stop", self.agent_id))

        def on_failure(self, *exc_info: Any) -> None:
            log.append(("failure", self.agent_id))

    return Recording


@contextmanager
def running(**kwargs: Any) -> Iterator[Runtime]:
    """A Runtime closed on the way out, whatever happens."""
    rt = Runtime(**kwargs)
    try:
        yield rt
    finally:
        rt.close()


def supervisor_of(rt: Runtime, agent_id: str) -> str:
    return str(rt.get_agent(agent_id)["supervisor"])


def settle(rt: Runtime, path: str = "root", timeout_s: float = WAIT_S) -> None:
    """Return once the supervisor at ``path`` has handled everything queued before this call."""
    sup = rt.system.supervisor(path)
    sup.actor_ref.ask(
        pykka_messages.ProxyCall(attr_path=("count_children",), args=(), kwargs={}), timeout=timeout_s
    )


def token(rt: Runtime, agent_id: str) -> str:
    return str(rt.ask(agent_id, "whoami", timeout=WAIT_S)["token"])


def end_incarnation(rt: Runtime, agent_id: str, trigger: Callable[[], object]) -> None:
    """Run ``trigger`` (which ends the agent's incarnation), then wait until its supervisor acted.

    The exit signal is queued as the incarnation's thread's last act, so once
    that thread has ended a round trip through the supervisor is a barrier.
    """
    path = supervisor_of(rt, agent_id)
    incarnation = rt.system.agents[agent_id].incarnation
    assert incarnation is not None and incarnation.thread is not None
    trigger()
    incarnation.thread.join(WAIT_S)
    assert not incarnation.thread.is_alive(), f"{agent_id}'s incarnation did not end"
    settle(rt, path)


def child_ids(rt: Runtime, path: str = "root") -> list[str]:
    return [c["id"] for c in rt.which_children(path)]


def exits_within(pid: int, timeout_s: float) -> bool:
    """Wait for any process (not only our child) to end, via a pidfd: no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)
