"""A hypothesis fuzz of command bodies over real NATS: every request answered, the node alive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nats
import orjson
import pytest
from _bridge_helpers import WAIT_S, BridgeNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from mistersmith import SupervisorSpec
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import ENVELOPE_FIELDS, ERROR_CODES, decode_reply

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(orjson.dumps),
    st.dictionaries(st.sampled_from(["message", "seconds", "x", "n"]), json_values, max_size=3).map(orjson.dumps),
    st.fixed_dictionaries(  # envelope-shaped: half-valid values, validated strictly
        {"id": st.text(max_size=8) | json_values, "type": st.just("command") | json_values,
         "ts": st.just("2026-01-01T00:00:00Z") | json_values, "payload": st.dictionaries(st.text(max_size=8), json_values)},
        optional={k: json_values for k in ENVELOPE_FIELDS if k not in ("id", "type", "ts", "payload")},
    ).map(orjson.dumps),
)
# every command of echo but "hang" (it would block the agent for as long as it is told), and noise
commands = st.sampled_from(["echo", "fail", "ping", "status", "pause", "resume"]) | st.from_regex(
    r"[A-Za-z0-9_$-]{1,12}", fullmatch=True
).filter(lambda c: c != "hang")


@pytest.fixture
def fuzzed(nats_server: EmbeddedNats) -> Iterator[tuple[BridgeNode, NATS]]:
    # 'fail' crashes the agent on purpose, hundreds of times: lift the root's intensity
    node = BridgeNode(nats_server.url, root=SupervisorSpec("root", intensity=1_000_000, period_s=1.0))
    try:
        assert node.bridge is not None
        node.run(node.bridge.aspawn("echo", "fz"))
        nc = node.run(nats.connect(node.url))
        try:
            yield node, nc
        finally:
            node.run(nc.close())
    finally:
        node.close()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=commands, body=bodies, with_reply=st.booleans())
def test_every_request_is_answered_and_the_node_lives(fuzzed: tuple[BridgeNode, NATS], cmd: str, body: bytes,
                                                      with_reply: bool) -> None:
    node, nc = fuzzed

    async def one() -> Any:
        if not with_reply:
            await nc.publish(f"agents.fz.commands.{cmd}", body)
            return None
        msg = await nc.request(f"agents.fz.commands.{cmd}", body, timeout=WAIT_S)
        return decode_reply(msg.data)

    reply = node.run(one())
    if reply is not None and not reply.ok:
        assert reply.error.code in ERROR_CODES, reply.error
    # alive: the agent (restarted after a 'fail', resumed after a 'pause') still answers
    async def alive() -> Any:
        await nc.request("agents.fz.commands.resume", b"", timeout=WAIT_S)
        return decode_reply((await nc.request("agents.fz.commands.ping", b"", timeout=WAIT_S)).data)

    pong = node.run(alive())
    assert pong.ok or pong.error.code == "restarting", pong
    assert not node.rt.closed
