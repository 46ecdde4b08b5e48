"""A property-based fuzz of /mcp: whatever arrives, the answer is well-formed and the server lives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from _web import JSON_HEADERS, Served, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

METHODS = ["initialize", "ping", "tools/list", "tools/call", "list_tools", "call_tool", "resources/list",
           "resources/read", "resources/templates/list", "server/discover", "notifications/initialized", "nope"]
TOOL_NAMES = ["spawn_agent", "stop_agent", "restart_agent", "list_agents", "get_agent", "get_agent_state",
              "supervision_tree", "send_command",
              "share_discovery", "query_discoveries", "replay_events", "system_health", "submit_task",
              "list_nodes", "x"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
arguments = st.dictionaries(
    st.sampled_from(["kind", "agent_id", "command", "payload", "timeout_s", "config", "restart", "since", "limit",
                     "event_types", "types", "min_confidence", "confidence", "content", "agent_role",
                     "discovery_type", "uri", "junk"]),
    json_values | st.sampled_from(["echo", "fz-1", "insight", 0.5, 3, ["started"]]), max_size=6)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", None]), "method": st.sampled_from(METHODS) | json_values},
    optional={"id": st.integers(0, 10**6) | st.text(max_size=8) | json_values,
              "params": st.fixed_dictionaries({}, optional={"name": st.sampled_from(TOOL_NAMES) | json_values,
                                                            "arguments": arguments | json_values,
                                                            "uri": st.sampled_from(["agent://fz-1", "discovery://x"])
                                                            | json_values,
                                                            "protocolVersion": st.sampled_from(["2025-11-25"])
                                                            | json_values}) | json_values},
)
params = st.fixed_dictionaries({}, optional={"name": st.sampled_from(TOOL_NAMES), "arguments": arguments,
                                             "uri": st.sampled_from(["agent://fz-1", "discovery://x", "agent://"]),
                                             "protocolVersion": st.sampled_from(["2025-11-25", "2025-06-18"])})
wellformed = st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.sampled_from(METHODS),
                                    "id": st.integers(0, 10**6), "params": params})
bodies = wellformed.map(orjson.dumps) | messages.map(orjson.dumps) | json_values.map(orjson.dumps) | st.binary(max_size=200)


def test_any_body_gets_a_well_formed_answer_and_the_server_lives(serve: Callable[..., Served]) -> None:
    served = serve(max_body_bytes=65536, rate_per_s=None, request_timeout_s=5.0)
    served.runtime.spawn("echo", "fz-1")
    seen: set[int] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              database=None)
    @given(body=bodies, modern=st.booleans())
    def one(body: bytes, modern: bool) -> None:
        headers = {**JSON_HEADERS, **({"mcp-protocol-version": "2026-07-28"} if modern else {})}
        reply = asyncio.run(request(served.url, "POST", "/mcp", body, headers))
        seen.add(reply.status)
        assert reply.status in (200, 202, 400, 404, 413), (reply.status, reply.body)
        if reply.status == 202:
            assert reply.body == b""
            return
        answer: Any = reply.json()
        assert answer["jsonrpc"] == "2.0"
        assert ("result" in answer) != ("error" in answer)
        if "error" in answer:
            assert isinstance(answer["error"]["code"], int) and answer["error"]["code"] != -32603, answer
        else:
            assert reply.status == 200

    one()
    assert {200, 400} <= seen
    reply = asyncio.run(request(served.url, "POST", "/mcp", b'{"jsonrpc":"2.0","method":"ping","id":1}',
                                JSON_HEADERS))
    assert reply.json()["result"] == {}
    assert http_ok(served)


def http_ok(served: Served) -> bool:
    reply = asyncio.run(request(served.url, "GET", "/health"))
    return reply.status == 200
