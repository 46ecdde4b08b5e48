"""Embed MisterSmith in an asyncio program: every call is awaited, none blocks the loop.

Run: ``python examples/async_embedding.py``
"""

from __future__ import annotations

import asyncio

from mistersmith import AgentFailedError, Runtime


async def main() -> None:
    async with Runtime() as rt:
        agents = [await rt.aspawn("echo", agent_id=f"echo-{i}") for i in range(3)]
        replies = await asyncio.gather(
            *(rt.aask(a, "echo", {"n": i}, timeout=5) for i, a in enumerate(agents))
        )
        print("replies:", replies)

        stream = rt.event_stream(agent_id="echo-0")
        try:
            await rt.aask("echo-0", "fail", timeout=5)
        except AgentFailedError as exc:
            print("crashed:", exc.reason)
        while (event := await stream.next(timeout_s=5)).event_type != "restarted":
            print("event:", event.event_type)
        print("event:", event.event_type, "restart_count", event.restart_count)
        stream.close()
        print(await rt.aask("echo-0", "ping", timeout=5))


if __name__ == "__main__":
    asyncio.run(main())
