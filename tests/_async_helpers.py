"""Helpers of the async-agent tests: what handlers saw, and asking from a helper thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from _helpers import WAIT_S
from mistersmith import Runtime

__all__ = ["Seen", "ask_in_thread"]


class Seen:
    """What the handlers saw, outside the agent (so it outlives incarnations)."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.unwound = threading.Event()
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[threading.Thread] = []


def ask_in_thread(rt: Runtime, agent: str, command_: str, payload: dict[str, Any]) -> Callable[[], BaseException | Any]:
    """Ask from a helper thread; the returned call joins it and gives the outcome (an exception or the result)."""
    outcome: list[Any] = []

    def caller() -> None:
        try:
            outcome.append(rt.ask(agent, command_, payload, timeout=WAIT_S))
        except BaseException as exc:  # checked by the test
            outcome.append(exc)

    thread = threading.Thread(target=caller, name="test-caller")
    thread.start()

    def result() -> BaseException | Any:
        thread.join(WAIT_S)
        assert not thread.is_alive()
        return outcome[0]

    return result
