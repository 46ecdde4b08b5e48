"""MCP progress and cancellation of ``send_command``, with the official SDK and on the raw wire.

- a ``tools/call`` with ``_meta.progressToken`` gets ``notifications/progress``
  on its SSE response stream, and the SDK's ``progress_callback`` sees them;
- a call the client gives up on (the SDK cancels its task: at 2026-07-28 it
  closes the POST; at 2025-11-25 it posts ``notifications/cancelled``) stops
  the command in the agent, no response is sent, and the agent is free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx2
import mcp
import orjson
import pytest

from _web import Served
from mistersmith import Agent, command

WAIT_S = 10.0


class Tokens(Agent):
    """Streams tokens, or awaits forever until cancelled."""

    kind = "tokens"
    entered = threading.Event()
    unwound = threading.Event()
    writes: list[int] = []

    @command
    async def write(self, words: int) -> str:
        type(self).writes.append(words)
        for i in range(words):
            self.progress(f"token-{i}", done=i + 1, total=words)
            await asyncio.sleep(0)
        return "done"

    @command
    async def forever(self) -> None:
        type(self).entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            type(self).unwound.set()


def served_with_tokens(serve: Callable[..., Served]) -> Served:
    Tokens.entered = threading.Event()
    Tokens.unwound = threading.Event()
    Tokens.writes = []
    served = serve()
    served.runtime.register("tokens", Tokens)
    served.runtime.spawn("tokens", "t1")
    return served


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_progress_callback_sees_each_token(serve: Callable[..., Served], mode: str) -> None:
    served = served_with_tokens(serve)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def main() -> Any:
        async with mcp.Client(served.url + "/mcp", mode=mode) as client:
            return await client.call_tool("send_command", {"agent_id": "t1", "command": "write",
                                                           "payload": {"words": 4}},
                                          progress_callback=on_progress)

    result = asyncio.run(main())
    assert not result.is_error
    assert result.structured_content == {"agent_id": "t1", "command": "write", "result": "done"}
    assert seen == [(1.0, 4, "token-0"), (2.0, 4, "token-1"), (3.0, 4, "token-2"), (4.0, 4, "token-3")]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_cancelling_the_sdk_call_cancels_the_command_and_frees_the_agent(
    serve: Callable[..., Served], mode: str
) -> None:
    served = served_with_tokens(serve)

    async def main() -> Any:
        async with mcp.Client(served.url + "/mcp", mode=mode) as client:
            call = asyncio.ensure_future(client.call_tool("send_command", {
                "agent_id": "t1", "command": "forever", "timeout_s": WAIT_S}))
            await asyncio.to_thread(Tokens.entered.wait, WAIT_S)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.to_thread(Tokens.unwound.wait, WAIT_S)
            return await client.call_tool("send_command", {"agent_id": "t1", "command": "ping"})

    pong = asyncio.run(main())
    assert Tokens.unwound.is_set()  # the handler's task was cancelled in the agent
    assert pong.structured_content is not None and pong.structured_content["result"]["pong"] is True
    assert served.runtime.get_agent("t1")["restart_count"] == 0
    assert served.runtime.stats()["cancelled"] == 1


def test_notifications_cancelled_on_the_raw_wire_sends_no_response(serve: Callable[..., Served]) -> None:
    served = served_with_tokens(serve)
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-11-25"}

    async def main() -> tuple[httpx2.Response, httpx2.Response]:
        async with httpx2.AsyncClient(base_url=served.url, timeout=WAIT_S) as http:
            call = asyncio.ensure_future(http.post("/mcp", headers=headers, content=orjson.dumps({
                "jsonrpc": "2.0", "id": 41, "method": "tools/call",
                "params": {"name": "send_command", "arguments": {"agent_id": "t1", "command": "forever"}}})))
            await asyncio.to_thread(Tokens.entered.wait, WAIT_S)
            cancel = await http.post("/mcp", headers=headers, content=orjson.dumps({
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 41, "reason": "the user pressed stop"}}))
            return cancel, await call

    cancel, answered = asyncio.run(main())
    assert cancel.status_code == 202
    assert answered.status_code == 202 and answered.content == b""  # no JSON-RPC response for request 41
    assert Tokens.unwound.wait(WAIT_S)
    assert served.runtime.ask("t1", "ping", timeout=WAIT_S)["pong"] is True
    assert len(served.app.mcp.inflight) == 0


def test_notifications_cancelled_of_a_queued_call_means_it_never_runs(serve: Callable[..., Served]) -> None:
    served = served_with_tokens(serve)
    headers = {"content-type": "application/json", "accept": "application/json",
               "mcp-protocol-version": "2025-11-25"}

    def call(request_id: int, command: str, payload: dict[str, Any] | None = None) -> bytes:
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
            "name": "send_command", "arguments": {"agent_id": "t1", "command": command, "payload": payload or {},
                                                  "timeout_s": WAIT_S}}})

    async def main() -> tuple[httpx2.Response, httpx2.Response]:
        async with httpx2.AsyncClient(base_url=served.url, timeout=WAIT_S) as http:
            busy = asyncio.ensure_future(http.post("/mcp", headers=headers, content=call(1, "forever")))
            await asyncio.to_thread(Tokens.entered.wait, WAIT_S)
            queued = asyncio.ensure_future(http.post("/mcp", headers=headers,
                                                     content=call(2, "write", {"words": 3})))
            mailbox = served.runtime.system.agents["t1"].context.mailbox
            while mailbox.depth() == 0:  # an HTTP round trip per look: until the second call is queued
                await http.get("/health")
            for request_id in (2, 1):
                await http.post("/mcp", headers=headers, content=orjson.dumps({
                    "jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}))
            return await queued, await busy

    queued, busy = asyncio.run(main())
    assert queued.status_code == 202 and queued.content == b""
    assert busy.status_code == 202 and busy.content == b""
    assert Tokens.unwound.wait(WAIT_S)
    stream = served.runtime.ask_stream("t1", "write", {"words": 1}, timeout=WAIT_S)
    assert [p.data for p in stream] == ["token-0"]  # the agent is free
    assert Tokens.writes == [1]  # and the cancelled `write` (3 words) never ran
    assert served.runtime.stats()["cancelled"] == 2
