"""agents.{id}.commands.{cmd}: request/reply, tell, trace context, errors, no responders (real nats-server)."""

from __future__ import annotations

import asyncio

from typing import Any

import nats
import orjson
import pytest
from _bridge_helpers import WAIT_S, BridgeNode, client
from nats.errors import NoRespondersError

from mistersmith import Agent, command
from mistersmith.bridge import new_traceparent
from mistersmith.envelope import Envelope, RemoteError
from mistersmith.errors import CommandTimeoutError


class Tally(Agent):
    """Adds up what it is told; answers the total."""

    kind = "tally"

    def on_start(self) -> None:
        self.total = 0

    @command("add")
    def add(self, n: int) -> None:
        self.total += n

    @command("total")
    def get_total(self) -> dict[str, Any]:
        return {"total": self.total}


def test_request_reply_to_an_agent(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        agent = await node.bridge.aspawn("echo", "echo-1")
        nc, ms = await client(node.url)
        try:
            assert await ms.request(agent, "echo", {"hello": "world", "n": [1, 2]}) == {"hello": "world", "n": [1, 2]}
            # any NATS client: a plain '{}' body, as `nats req agents.echo-1.commands.ping '{}'`
            reply = await nc.request("agents.echo-1.commands.ping", b"{}", timeout=WAIT_S)
            assert orjson.loads(reply.data) == {"ok": True, "result": {"pong": True, "agent_id": "echo-1"}}
            # an empty body is an empty payload
            reply = await nc.request("agents.echo-1.commands.status", b"", timeout=WAIT_S)
            assert orjson.loads(reply.data)["result"]["agent_id"] == "echo-1"
            # a full envelope is accepted too
            env = Envelope(type="command", payload={"via": "envelope"}, source="test")
            reply = await nc.request("agents.echo-1.commands.echo", env.encode(), timeout=WAIT_S)
            assert orjson.loads(reply.data) == {"ok": True, "result": {"via": "envelope"}}
        finally:
            await nc.close()
        assert node.bridge.stats()["requests_in"] >= 4

    node.run(scenario())


def test_tell_is_fire_and_forget_in_order(node: BridgeNode) -> None:
    node.rt.register("tally", Tally)

    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("tally", "t1")
        nc, ms = await client(node.url)
        try:
            for n in range(1, 51):
                await ms.tell("t1", "add", {"n": n})
            # same connection, same subscription: the request is queued after the tells
            assert await ms.request("t1", "total") == {"total": sum(range(1, 51))}
        finally:
            await nc.close()
        assert node.bridge.stats()["tells_in"] == 50

    node.run(scenario())


def test_traceparent_travels_back_on_the_reply(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "traced")
        nc = await nats.connect(node.url)
        try:
            parent = new_traceparent()
            headers = {"traceparent": parent, "tracestate": "vendor=1"}
            ok = await nc.request("agents.traced.commands.echo", b'{"x":1}', timeout=WAIT_S, headers=headers)
            assert ok.headers is not None and ok.headers.get("traceparent") == parent
            assert ok.headers.get("tracestate") == "vendor=1"
            failed = await nc.request("agents.traced.commands.nope", b"{}", timeout=WAIT_S, headers=headers)
            assert orjson.loads(failed.data)["error"]["code"] == "unknown_command"
            assert failed.headers is not None and failed.headers.get("traceparent") == parent
            # an invalid traceparent is ignored, not refused
            bad = await nc.request("agents.traced.commands.echo", b"{}", timeout=WAIT_S,
                                   headers={"traceparent": "00-zz-yy-01"})
            assert orjson.loads(bad.data)["ok"] is True and not (bad.headers or {}).get("traceparent")
        finally:
            await nc.close()

    node.run(scenario())


def test_unknown_id_fails_fast_with_no_responders(node: BridgeNode) -> None:
    async def scenario() -> None:
        nc, ms = await client(node.url)
        try:
            with pytest.raises(NoRespondersError):
                await nc.request("agents.nobody.commands.ping", b"{}", timeout=WAIT_S)
            with pytest.raises(RemoteError) as info:
                await ms.request("nobody", "ping")
            assert info.value.code == "unknown_agent"
        finally:
            await nc.close()

    node.run(scenario())


@pytest.mark.parametrize(
    ("cmd", "body", "code"),
    [
        ("nope", b"{}", "unknown_command"),
        ("fail", b'{"message": 3}', "invalid_payload"),
        ("echo", b"[1, 2]", "invalid_payload"),
        ("echo", b"not json", "invalid_envelope"),
        ("echo", b'{"id": "m", "type": "command", "ts": "never", "payload": {}}', "invalid_envelope"),
        ("fail", b"{}", "agent_failed"),
    ],
)
def test_error_replies(node: BridgeNode, cmd: str, body: bytes, code: str) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "e")
        nc = await nats.connect(node.url)
        try:
            reply = orjson.loads((await nc.request(f"agents.e.commands.{cmd}", body, timeout=WAIT_S)).data)
            assert reply["ok"] is False and reply["error"]["code"] == code and reply["error"]["message"]
            # the agent (restarted if it crashed) still answers
            ping = await nc.request("agents.e.commands.ping", b"", timeout=WAIT_S)
            assert orjson.loads(ping.data)["ok"] is True
        finally:
            await nc.close()
        # counted from the reply value, not from its bytes: one error reply of the two
        assert (node.bridge.counters.get("replies_out"), node.bridge.counters.get("error_replies")) == (2, 1)

    node.run(scenario())


def test_malformed_tells_are_counted_not_fatal(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "e2")
        nc, ms = await client(node.url)
        try:
            await nc.publish("agents.e2.commands.echo", b"garbage")
            await nc.publish("agents.e2.commands.nope", b"{}")  # refused by the agent: logged there
            assert await ms.request("e2", "ping") == {"pong": True, "agent_id": "e2"}
        finally:
            await nc.close()
        assert node.bridge.stats()["invalid_in"] == 1

    node.run(scenario())


def test_a_full_mailbox_answers_mailbox_full(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "slow", mailbox_size=1)
        nc, ms = await client(node.url)
        try:
            await ms.tell("slow", "hang", {"seconds": 30.0})
            # Wait (bounded) until the agent has taken the hang out of its mailbox, so that
            # exactly one more message fills it, however slow the machine.
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while node.rt.get_agent("slow")["state"] != "busy":
                assert asyncio.get_running_loop().time() < deadline, "the agent never started the hang"
                await asyncio.sleep(0.01)  # polling a state with a deadline, not ordering by time
            await ms.tell("slow", "echo", {})
            await nc.flush()
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while node.rt.get_agent("slow")["mailbox_depth"] < 1:
                assert asyncio.get_running_loop().time() < deadline, "the echo never reached the mailbox"
                await asyncio.sleep(0.01)
            with pytest.raises(RemoteError) as info:
                await ms.request("slow", "echo", {})
            assert info.value.code == "mailbox_full"
        finally:
            await nc.close()
            await node.rt.astop("slow")  # cancels the hang

    node.run(scenario())


def test_a_request_that_outlives_the_callers_timeout(node: BridgeNode) -> None:
    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "sleepy")
        nc, ms = await client(node.url)
        try:
            with pytest.raises(CommandTimeoutError):
                await ms.request("sleepy", "hang", {"seconds": 30.0}, timeout_s=0.2)
        finally:
            await nc.close()
            await node.rt.astop("sleepy")

    node.run(scenario())


def test_a_request_right_after_a_crash_waits_for_the_restart_as_in_process(node: BridgeNode) -> None:
    """Every door has the stash's semantics: a command during a short backoff is answered by the
    next incarnation; one whose caller's deadline (Mistersmith-Timeout) comes first hears
    `restarting` at once, with the time to retry."""
    from mistersmith import Backoff

    async def scenario() -> None:
        assert node.bridge is not None
        await node.bridge.aspawn("echo", "quick")  # the default root: a 0.1 s backoff
        await node.rt.aspawn("echo", "slow", backoff=Backoff(min_s=30.0, max_s=30.0, jitter=0.0))
        await node.bridge.router.route("slow")
        await node.bridge.nc.flush()  # the server has its subscriptions before another connection asks
        nc, _ = await client(node.url)
        try:
            for agent in ("quick", "slow"):
                crashed = await nc.request(f"agents.{agent}.commands.fail", b"{}", timeout=WAIT_S)
                assert orjson.loads(crashed.data)["error"]["code"] == "agent_failed"
            pong = await nc.request("agents.quick.commands.ping", b"{}", timeout=WAIT_S)
            assert orjson.loads(pong.data) == {"ok": True, "result": {"pong": True, "agent_id": "quick"}}
            refused = await nc.request("agents.slow.commands.ping", b"{}", timeout=WAIT_S,
                                       headers={"Mistersmith-Timeout": "5"})
            error = orjson.loads(refused.data)["error"]
            assert error["code"] == "restarting" and "retry in about" in error["message"], error
        finally:
            await nc.close()

    node.run(scenario())
