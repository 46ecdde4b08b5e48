"""``/mcp`` over raw JSON-RPC: the handshake, both eras, every error path, and result
shapes checked against the SDK's own per-version wire schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from _web import JSON_HEADERS, Served, http, rpc
from mcp_types.methods import validate_server_result

MODERN = "2026-07-28"


def _modern(served: Served, method: str, params: dict[str, Any] | None = None, *, version: str = MODERN,
            headers: dict[str, str] | None = None, id_: Any = 7) -> Any:
    params = dict(params or {})
    params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version,
                       "io.modelcontextprotocol/clientCapabilities": {},
                       "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}}
    base = {"mcp-protocol-version": version, "mcp-method": method}
    name = params.get("name", params.get("uri"))
    if isinstance(name, str):
        base["mcp-name"] = name
    return rpc(served, method, params, id_=id_, headers={**base, **(headers or {})})


def test_the_seed_curl_example_lists_the_tools(serve: Callable[..., Served]) -> None:
    served = serve()
    # Exactly what curl sends: Accept: */*, no session, the design's method name.
    reply = http(served.url, "POST", "/mcp", b'{"jsonrpc":"2.0","method":"list_tools","id":1}',
                 {"content-type": "application/json", "accept": "*/*"})
    assert reply.status == 200
    body = reply.json()
    assert body["id"] == 1
    names = [t["name"] for t in body["result"]["tools"]]
    assert "spawn_agent" in names and "send_command" in names and len(names) == 16


def test_call_tool_alias_calls_a_tool(serve: Callable[..., Served]) -> None:
    served = serve()
    reply = rpc(served, "call_tool", {"name": "spawn_agent", "arguments": {"kind": "echo", "agent_id": "alias"}})
    assert reply.json()["result"]["structuredContent"]["agent_id"] == "alias"


def test_initialize_makes_a_session_that_delete_ends(serve: Callable[..., Served]) -> None:
    served = serve()
    reply = rpc(served, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                       "clientInfo": {"name": "raw", "version": "0"}})
    assert reply.status == 200
    result = reply.json()["result"]
    validate_server_result("initialize", "2025-11-25", result)
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"]["tools"] == {"listChanged": False}
    session = reply.headers["mcp-session-id"]
    assert session.isprintable() and len(session) >= 16
    headers = {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    note = http(served.url, "POST", "/mcp", b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                {**JSON_HEADERS, **headers})
    assert note.status == 202 and note.body == b""
    assert rpc(served, "ping", headers=headers).json()["result"] == {}
    ended = http(served.url, "DELETE", "/mcp", headers=headers)
    assert ended.status == 204
    gone = rpc(served, "ping", headers=headers)
    assert gone.status == 404
    assert http(served.url, "DELETE", "/mcp", headers=headers).status == 404
    assert http(served.url, "DELETE", "/mcp").status == 400


def test_initialize_negotiates_down_to_a_version_it_speaks(serve: Callable[..., Served]) -> None:
    served = serve()
    older = rpc(served, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
    assert older.json()["result"]["protocolVersion"] == "2025-06-18"
    unknown = rpc(served, "initialize", {"protocolVersion": "1999-01-01", "capabilities": {}})
    assert unknown.json()["result"]["protocolVersion"] == "2025-11-25"


def test_legacy_results_match_the_2025_11_25_schemas(serve: Callable[..., Served]) -> None:
    served = serve()
    rpc(served, "tools/call", {"name": "spawn_agent", "arguments": {"kind": "echo", "agent_id": "s1"}})
    for method, params in [("tools/list", {}), ("resources/list", {}), ("resources/templates/list", {}),
                           ("resources/read", {"uri": "agent://s1"}), ("ping", {}),
                           ("tools/call", {"name": "list_agents", "arguments": {}}),
                           ("tools/call", {"name": "get_agent", "arguments": {"agent_id": "nobody"}})]:
        reply = rpc(served, method, params)
        assert reply.status == 200, reply.body
        validate_server_result(method, "2025-11-25", reply.json()["result"])


def test_modern_results_match_the_2026_07_28_schemas(serve: Callable[..., Served]) -> None:
    served = serve()
    discover = _modern(served, "server/discover")
    assert discover.status == 200
    result = discover.json()["result"]
    validate_server_result("server/discover", MODERN, result)
    assert MODERN in result["supportedVersions"] and "2025-11-25" in result["supportedVersions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mistersmith"
    _modern(served, "tools/call", {"name": "spawn_agent", "arguments": {"kind": "echo", "agent_id": "m1"}})
    for method, params in [("tools/list", {}), ("resources/list", {}), ("resources/templates/list", {}),
                           ("resources/read", {"uri": "agent://m1"}),
                           ("tools/call", {"name": "send_command", "arguments": {"agent_id": "m1", "command": "echo"}})]:
        reply = _modern(served, method, params)
        assert reply.status == 200, reply.body
        body = reply.json()["result"]
        validate_server_result(method, MODERN, body)
        assert body["resultType"] == "complete"
    assert len(served.app.sessions) == 0


def test_modern_envelope_errors(serve: Callable[..., Served]) -> None:
    served = serve()
    unsupported = _modern(served, "server/discover", version="2099-01-01")
    assert unsupported.status == 400
    error = unsupported.json()["error"]
    assert error["code"] == -32022
    assert error["data"] == {"supported": ["2025-03-26", "2025-06-18", "2025-11-25", MODERN], "requested": "2099-01-01"}
    mismatch = _modern(served, "tools/list", headers={"mcp-method": "tools/call"})
    assert (mismatch.status, mismatch.json()["error"]["code"]) == (400, -32020)
    wrong_name = _modern(served, "tools/call", {"name": "list_agents", "arguments": {}},
                         headers={"mcp-name": "get_agent"})
    assert (wrong_name.status, wrong_name.json()["error"]["code"]) == (400, -32020)
    no_meta = rpc(served, "server/discover")
    assert (no_meta.status, no_meta.json()["error"]["code"]) == (400, -32602)
    ping = _modern(served, "ping")  # removed in 2026-07-28
    assert (ping.status, ping.json()["error"]["code"]) == (404, -32601)
    initialize = _modern(served, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert initialize.status == 400


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", -32700),
    (b"", -32700),
    (b'[{"jsonrpc":"2.0","method":"ping","id":1}]', -32600),
    (b"[]", -32600),
    (b'"ping"', -32600),
    (b'{"jsonrpc":"1.0","method":"ping","id":1}', -32600),
    (b'{"jsonrpc":"2.0","id":1}', -32600),
    (b'{"jsonrpc":"2.0","method":42,"id":1}', -32600),
    (b'{"jsonrpc":"2.0","method":"ping","id":true}', -32600),
    (b'{"jsonrpc":"2.0","method":"ping","id":null}', -32600),
    (b'{"jsonrpc":"2.0","method":"ping","params":[1],"id":1}', -32600),
])
def test_malformed_messages_get_400_and_a_jsonrpc_error(serve: Callable[..., Served], body: bytes, code: int) -> None:
    served = serve()
    reply = http(served.url, "POST", "/mcp", body, JSON_HEADERS)
    assert reply.status == 400
    assert reply.json() == {"jsonrpc": "2.0", "id": None, "error": reply.json()["error"]}
    assert reply.json()["error"]["code"] == code
    assert rpc(served, "ping").json()["result"] == {}  # and the server stays up


@pytest.mark.parametrize(("method", "params", "code"), [
    ("no/such/method", {}, -32601),
    ("logging/setLevel", {"level": "info"}, -32601),
    ("tools/call", {"name": "no_such_tool", "arguments": {}}, -32602),
    ("tools/call", {"arguments": {}}, -32602),
    ("tools/call", {"name": "list_agents", "arguments": [1, 2]}, -32602),
    ("resources/read", {}, -32602),
    ("resources/read", {"uri": 5}, -32602),
    ("resources/read", {"uri": "agent://nobody"}, -32002),
    ("resources/read", {"uri": "discovery://nothing"}, -32002),
    ("resources/read", {"uri": "ftp://x"}, -32002),
    ("resources/list", {"cursor": "not-a-cursor"}, -32602),
    ("initialize", {"protocolVersion": 2025}, -32602),
    ("initialize", {"protocolVersion": "2025-11-25", "clientInfo": "me"}, -32602),
])
def test_method_errors_carry_the_right_codes(serve: Callable[..., Served], method: str, params: dict[str, Any],
                                             code: int) -> None:
    served = serve()
    reply = rpc(served, method, params, id_="abc")
    assert reply.status == 200
    assert reply.json()["id"] == "abc"
    assert reply.json()["error"]["code"] == code


def test_wrong_arguments_are_a_tool_error_the_model_can_read(serve: Callable[..., Served]) -> None:
    served = serve()
    reply = rpc(served, "tools/call", {"name": "send_command", "arguments": {"agent_id": "a", "timeout_s": "soon"}})
    result = reply.json()["result"]
    assert result["isError"] is True
    text = orjson.loads(result["content"][0]["text"])
    assert text["error"]["code"] == "invalid_arguments"
    assert "command" in text["error"]["message"] or "timeout_s" in text["error"]["message"]
    assert "structuredContent" not in result


@pytest.mark.parametrize(("headers", "status"), [
    ({"content-type": "text/plain"}, 415),
    ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ({}, 415),
    ({"content-type": "application/json", "accept": "text/html"}, 406),
    ({"content-type": "application/json", "accept": "text/event-stream"}, 406),
    ({"content-type": "application/json; charset=utf-8", "accept": "application/json"}, 200),
    ({"content-type": "application/json"}, 200),
])
def test_content_type_and_accept_are_checked(serve: Callable[..., Served], headers: dict[str, str],
                                             status: int) -> None:
    served = serve()
    reply = http(served.url, "POST", "/mcp", b'{"jsonrpc":"2.0","method":"ping","id":1}', headers)
    assert reply.status == status


def test_get_is_405_and_other_verbs_too(serve: Callable[..., Served]) -> None:
    served = serve()
    reply = http(served.url, "GET", "/mcp", headers={"accept": "text/event-stream"})
    assert reply.status == 405
    assert "POST" in reply.headers["allow"]
    assert http(served.url, "PUT", "/mcp", b"{}", JSON_HEADERS).status == 405


def test_unknown_session_is_404_and_bad_version_header_is_400(serve: Callable[..., Served]) -> None:
    served = serve()
    assert rpc(served, "tools/list", headers={"mcp-session-id": "never-issued"}).status == 404
    bad = rpc(served, "tools/list", headers={"mcp-protocol-version": "1.0"})
    assert bad.status == 400
    assert "MCP-Protocol-Version" in bad.json()["error"]["message"]


def test_notifications_and_client_responses_are_accepted_without_a_body(serve: Callable[..., Served]) -> None:
    served = serve()
    for body in (b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
                 b'{"jsonrpc":"2.0","id":3,"result":{}}'):
        reply = http(served.url, "POST", "/mcp", body, JSON_HEADERS)
        assert (reply.status, reply.body) == (202, b"")


def test_an_oversized_body_is_413_and_the_server_stays_up(serve: Callable[..., Served]) -> None:
    served = serve(max_body_bytes=4096)
    big = orjson.dumps({"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                        "params": {"name": "send_command", "arguments": {"payload": {"x": "y" * 5000}}}})
    reply = http(served.url, "POST", "/mcp", big, JSON_HEADERS)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "too_large"
    assert rpc(served, "ping").status == 200


def test_a_session_keeps_only_a_bounded_client_name_and_version(serve: Callable[..., Served]) -> None:
    served = serve()
    client_info = {"name": "n" * 10_000, "version": "1.2.3", "title": "t" * 100_000, "icons": [{"src": "x" * 1000}],
                   "websiteUrl": "https://example.com"}
    reply = rpc(served, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client_info})
    assert reply.status == 200
    session = served.app.sessions.get(reply.headers["mcp-session-id"])
    assert session is not None
    assert session.client_info == {"name": "n" * 128, "version": "1.2.3"}
    odd = rpc(served, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                     "clientInfo": {"name": ["not", "a", "string"], "version": 3}})
    assert served.app.sessions.get(odd.headers["mcp-session-id"]).client_info == {}  # type: ignore[union-attr]


def test_sessions_are_capped_and_expire_by_the_config(serve: Callable[..., Served]) -> None:
    from mistersmith.web import WebConfig

    assert (WebConfig().max_sessions, WebConfig().session_idle_s) == (1000, 600.0)
    served = serve(max_sessions=2)
    ids = [rpc(served, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}}).headers["mcp-session-id"]
           for _ in range(3)]
    assert len(served.app.sessions) == 2
    headers = {"mcp-protocol-version": "2025-11-25"}
    assert rpc(served, "ping", headers={**headers, "mcp-session-id": ids[0]}).status == 404  # the oldest went
    assert rpc(served, "ping", headers={**headers, "mcp-session-id": ids[2]}).status == 200
