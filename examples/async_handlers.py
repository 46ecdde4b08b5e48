"""Async handlers, progress and cancellation, in one small agent.

The agent's ``async def`` handlers run on its own event loop, in its own
thread; here they "call a model" (an ``asyncio.sleep`` stands in for the
network). ``ask_stream`` reads the progress of a command as it runs, and
``astream`` does the same from an asyncio program. Stopping the agent cancels
the call in flight: its ``finally`` runs.

Run: ``python examples/async_handlers.py``
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from mistersmith import Agent, Runtime, UnknownAgentError, command


WAITING = threading.Event()  # set once `forever` is in flight


async def fake_model(prompt: str) -> str:
    await asyncio.sleep(0.01)  # stands in for an HTTP call to a model
    return prompt.upper()


class Writer(Agent):
    async def on_start(self) -> None:  # hooks may be async too
        self.calls = 0

    @command
    async def draft(self, topics: list[str]) -> dict[str, Any]:
        """Ask the model about every topic at once; report each answer as progress."""
        done = 0

        async def one(topic: str) -> str:
            nonlocal done
            answer = await fake_model(topic)
            done += 1
            self.progress(topic, done=done, total=len(topics))
            return answer

        answers = await asyncio.gather(*(one(t) for t in topics))
        self.calls += len(topics)
        return {"answers": answers, "calls": self.calls}

    @command
    async def tokens(self, text: str) -> AsyncIterator[str]:
        """An async generator: each yielded item is progress (its result is None)."""
        for word in text.split():
            await asyncio.sleep(0)
            yield word

    @command
    async def forever(self) -> None:
        try:
            WAITING.set()
            await asyncio.Event().wait()  # never set: only a stop ends it
        finally:
            print("forever: cancelled, finally ran")


def main() -> None:
    with Runtime(kinds={"writer": Writer}) as rt:
        agent = rt.spawn("writer", "w")
        stream = rt.ask_stream(agent, "draft", {"topics": ["tea", "rain", "bells"]}, timeout=5)
        for item in stream:
            print(f"progress: {item.data} ({item.done:.0f}/{item.total:.0f})")
        print("result:", stream.result())
        print("ask ignores progress:", rt.ask(agent, "draft", {"topics": ["owls"]}, timeout=5))

        async def from_a_loop() -> None:
            words = [item.data async for item in rt.astream(agent, "tokens", {"text": "one two three"}, timeout=5)]
            print("streamed on the loop:", words)

        asyncio.run(from_a_loop())

        rt.send(agent, "forever")
        WAITING.wait(5)
        rt.stop(agent)  # cancels the command in flight; returns once the agent has ended
        try:
            rt.ask(agent, "ping", timeout=5)
        except UnknownAgentError:
            print("stopped; leaked threads:", rt.stats()["leaked_threads"])


if __name__ == "__main__":
    main()
