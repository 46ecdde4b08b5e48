"""``mistersmith send``: one command to an agent over NATS, its progress as it comes, Ctrl-C to cancel it.

The request carries a fresh correlation id and the caller's deadline
(``mistersmith.headers``). With ``--stream`` it asks for the command's progress
(``MS-Stream: 1``) and prints each item as it arrives: a string as it is, any
other value as compact JSON (``--json``: every item as a JSON line). Ctrl-C
sends ``agents.<id>.control.cancel`` for that correlation id before exiting
130, so the agent stops the work instead of finishing it for nobody.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith.bridge import subjects
from mistersmith.bridge.door import CLI_DOOR, DOOR_HEADER
from mistersmith.config import Settings
from mistersmith.headers import CORRELATION, KIND, KIND_PROGRESS, STREAM, decode_progress

from ._client import _token, _with_nats, json_object
from ._errors import failed, unreachable
from ._nats import reply_result, request, request_headers
from ._output import Output

__all__ = ["run_send"]

_CANCEL_WAIT_S = 2.0


def run_send(args: argparse.Namespace, out: Output) -> int:
    agent_id, command = _token(args.agent_id, "agent id"), _token(args.command, "command")
    assert agent_id is not None and command is not None
    payload = json_object(args.payload, "payload") or {}
    subject = subjects.command(agent_id, command)
    cid = uuid.uuid4().hex

    async def body(nc: NATS, _: Settings) -> Any:
        if args.tell:
            await nc.publish(subject, json.dumps(payload).encode(), headers={DOOR_HEADER: CLI_DOOR})
            await nc.flush(timeout=max(1, round(args.timeout)))
            return {"sent": True, "subject": subject}
        try:
            if args.stream:
                return await _stream(nc, subject, payload, args.timeout, cid, out)
            missing = failed(f"unknown_agent: no node hosts agent {agent_id!r} (no responders on {subject})",
                             code="unknown_agent")
            return await request(nc, subject, payload, args.timeout, no_responders=missing,
                                 headers={CORRELATION: cid})
        except asyncio.CancelledError:  # Ctrl-C: cancel the command in the agent, then exit 130
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await _cancel(nc, agent_id, cid, out)
            raise

    result = _with_nats(args, body)
    out.result(result, lambda: f"told {agent_id} to {command}" if args.tell else json.dumps(result, indent=2))
    return 0


async def _stream(nc: NATS, subject: str, payload: dict[str, Any], timeout_s: float, cid: str, out: Output) -> Any:
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Msg] = asyncio.Queue()
    sub = await nc.subscribe(inbox, cb=replies.put)
    try:
        await nc.publish(subject, orjson.dumps(payload), reply=inbox,
                         headers=request_headers(timeout_s, **{CORRELATION: cid, STREAM: "1"}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(replies.get(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise unreachable(f"no answer on {subject} within {timeout_s:g} s (--timeout)") from None
            if msg.headers and msg.headers.get(KIND) == KIND_PROGRESS:
                item = decode_progress(msg.data)
                data = item["data"]
                out.record(item, data if isinstance(data, str) else orjson.dumps(data).decode())
                continue
            if not msg.data and msg.headers and msg.headers.get("Status") == "503":
                raise failed(f"unknown_agent: no node hosts the agent (no responders on {subject})",
                             code="unknown_agent")
            return reply_result(msg.data, subject)
    finally:
        await sub.unsubscribe()


async def _cancel(nc: NATS, agent_id: str, cid: str, out: Output) -> None:
    try:
        msg = await nc.request(subjects.agent_control(agent_id, "cancel"), orjson.dumps({"correlation_id": cid}),
                               timeout=_CANCEL_WAIT_S, headers={DOOR_HEADER: CLI_DOOR})
        cancelled = reply_result(msg.data, "cancel").get("cancelled")
    except Exception as exc:  # noqa: BLE001 - already exiting: say what happened, never hide the interrupt
        out.note(f"could not cancel the command in agent {agent_id}: {exc}")
        return
    if cancelled:
        out.note(f"cancelled the command in agent {agent_id}")
