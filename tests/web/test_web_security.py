"""The guard: bearer auth on every route but /health, Origin, rate limit, body limit,
timeouts, and the bind-address rule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from _web import JSON_HEADERS, TOKEN, Served, http, rpc

from mistersmith.errors import SpecError
from mistersmith.web import Backends, HttpServer, WebConfig, build_app
from mistersmith.web.security import TokenBuckets

PING = b'{"jsonrpc":"2.0","method":"ping","id":1}'
ROUTES = [("POST", "/mcp"), ("DELETE", "/mcp"), ("GET", "/info"), ("GET", "/stats/discoveries"),
          ("GET", "/stats/nats"), ("GET", "/metrics"), ("GET", "/discoveries/stream"), ("GET", "/nowhere")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("credentials", [None, "Bearer wrong-token-xxxxxxxxxxxx", f"Basic {TOKEN}", "Bearer",
                                         f"Bearer {TOKEN}x", f"bearer {TOKEN[:-1]}"])
def test_every_route_but_health_needs_the_token(serve: Callable[..., Served], method: str, path: str,
                                                credentials: str | None) -> None:
    served = serve(api_token=TOKEN)
    headers = {**JSON_HEADERS, **({"authorization": credentials} if credentials else {})}
    reply = http(served.url, method, path, PING if method == "POST" else None, headers)
    assert reply.status == 401
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="mistersmith"')
    assert ('error="invalid_token"' in challenge) == (credentials is not None)
    assert reply.json()["error"]["code"] == "unauthorized"


def test_the_right_token_opens_every_route(serve: Callable[..., Served]) -> None:
    served = serve(api_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert rpc(served, "ping").status == 200  # rpc() sends the token
    for path, status in [("/info", 200), ("/stats/discoveries", 200), ("/stats/nats", 503), ("/metrics", 200),
                         ("/nowhere", 404)]:
        assert http(served.url, "GET", path, headers=auth).status == status, path
    assert http(served.url, "GET", "/health").status == 200  # no token needed


def test_without_a_token_nothing_is_asked(serve: Callable[..., Served]) -> None:
    served = serve()
    assert http(served.url, "GET", "/info").json()["auth"] == "none"
    assert http(served.url, "POST", "/mcp", PING, JSON_HEADERS).status == 200


@pytest.mark.parametrize(("origin", "status"), [
    ("http://evil.example", 403),
    ("https://localhost.evil.example", 403),
    ("null", 403),
    ("http://192.168.1.10:8080", 403),
    ("http://localhost:3000", 200),
    ("http://127.0.0.1:8080", 200),
    ("http://[::1]:9000", 200),
    ("https://app.example.com", 200),
])
def test_a_present_origin_must_be_loopback_or_allowed(serve: Callable[..., Served], origin: str, status: int) -> None:
    served = serve(allowed_origins=("https://app.example.com",))
    reply = http(served.url, "POST", "/mcp", PING, {**JSON_HEADERS, "origin": origin})
    assert reply.status == status
    if status == 403:
        assert reply.json()["error"]["code"] == "forbidden_origin"
        assert http(served.url, "GET", "/health", headers={"origin": origin}).status == 403


def test_cors_is_off_by_default_and_configurable(serve: Callable[..., Served]) -> None:
    plain = serve()
    reply = http(plain.url, "POST", "/mcp", PING, {**JSON_HEADERS, "origin": "http://localhost:3000"})
    assert "access-control-allow-origin" not in reply.headers
    served = serve(cors_origins=("https://app.example.com",), api_token=TOKEN)
    preflight = http(served.url, "OPTIONS", "/mcp", headers={
        "origin": "https://app.example.com", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-session-id"})
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    actual = http(served.url, "POST", "/mcp", PING, {**JSON_HEADERS, "origin": "https://app.example.com",
                                                     "authorization": f"Bearer {TOKEN}"})
    assert actual.status == 200
    assert actual.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "mcp-session-id" in actual.headers["access-control-expose-headers"].lower()


def test_token_buckets_refill_at_their_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # per client
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 60
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # never more than the burst


def test_token_buckets_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=lambda: now[0], max_clients=100)
    for i in range(1000):
        buckets.take(f"client-{i}")
    assert len(buckets._buckets) <= 100


def test_an_empty_bucket_answers_429_with_retry_after(serve: Callable[..., Served]) -> None:
    served = serve(rate_per_s=0.01, rate_burst=3)
    statuses = [http(served.url, "GET", "/info").status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    reply = http(served.url, "POST", "/mcp", PING, JSON_HEADERS)
    assert reply.status == 429
    assert int(reply.headers["retry-after"]) >= 1
    assert 'mistersmith_http_refused_total{reason="429"}' in served.app.metrics.render()


def test_health_is_outside_the_rate_limit(serve: Callable[..., Served]) -> None:
    served = serve(rate_per_s=0.01, rate_burst=2)
    assert [http(served.url, "GET", "/health").status for _ in range(5)] == [200] * 5  # takes no tokens
    assert [http(served.url, "GET", "/info").status for _ in range(3)] == [200, 200, 429]
    assert http(served.url, "GET", "/health").status == 200  # an empty bucket does not fail health checks


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("host", ["rebind.evil.example", "rebind.evil.example:8080", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "10.0.0.5", "[::2]:80", "", "local host"])
def test_a_host_that_is_not_loopback_or_allowed_gets_421(serve: Callable[..., Served], method: str, path: str,
                                                         host: str) -> None:
    served = serve()  # no token: what a DNS-rebinding page would read
    reply = http(served.url, method, path, PING if method == "POST" else None, {**JSON_HEADERS, "host": host})
    assert reply.status == 421
    error = reply.json()["error"]
    assert error["code"] == "misdirected_request"
    assert "http.allowed_hosts" in error["message"]
    assert (repr(host) if host else "(none)") in error["message"]
    assert 'mistersmith_http_refused_total{reason="421"}' in served.app.metrics.render()


@pytest.mark.parametrize("host", ["localhost", "localhost:3000", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:8080",
                                  "LOCALHOST:80", "node.example", "node.example:9999", "10.0.0.5:8443"])
def test_loopback_and_allowed_hosts_are_answered(serve: Callable[..., Served], host: str) -> None:
    served = serve(allowed_hosts=("node.example", "10.0.0.5:8443"))
    assert http(served.url, "GET", "/info", headers={"host": host}).status == 200
    assert rpc(served, "ping", headers={"host": host}).status == 200


def test_an_allowed_host_with_a_port_allows_that_port_only(serve: Callable[..., Served]) -> None:
    served = serve(allowed_hosts=("10.0.0.5:8443",))
    assert http(served.url, "GET", "/info", headers={"host": "10.0.0.5:8443"}).status == 200
    assert http(served.url, "GET", "/info", headers={"host": "10.0.0.5:8444"}).status == 421
    assert http(served.url, "GET", "/info", headers={"host": "10.0.0.5"}).status == 421


def test_health_answers_any_host_and_star_allows_every_host(serve: Callable[..., Served]) -> None:
    strict = serve(api_token=TOKEN)
    assert http(strict.url, "GET", "/health", headers={"host": "pod-10-0-0-5.internal"}).status == 200
    assert http(strict.url, "GET", "/info", headers={"host": "pod-10-0-0-5.internal", **strict.auth()}).status == 421
    anything = serve(allowed_hosts=("*",))
    assert http(anything.url, "GET", "/info", headers={"host": "pod-10-0-0-5.internal"}).status == 200


def test_the_sse_stream_refuses_a_foreign_host(serve: Callable[..., Served]) -> None:
    from _web import SseClient

    served = serve()

    async def attempt() -> tuple[int, bytes]:
        client = await SseClient.open(served.url, headers={"host": "rebind.evil.example"})
        try:
            return client.status, await client.body()
        finally:
            client.close()

    status, body = asyncio.run(attempt())
    assert status == 421 and b"misdirected_request" in body
    assert served.app.streams.served == 0


@pytest.mark.parametrize(("bound", "host", "status"), [
    ("127.0.0.2", "127.0.0.2:8080", 200),  # the bound address itself
    ("127.0.0.2", "127.0.0.3:8080", 421),
    ("0.0.0.0", "0.0.0.0:8080", 421),  # a wildcard bind is not a name clients use
    ("0.0.0.0", "localhost:8080", 200),
])
def test_the_bound_host_is_allowed_unless_it_is_a_wildcard(serve: Callable[..., Served], bound: str, host: str,
                                                           status: int) -> None:
    served = serve(host=bound, api_token=TOKEN)
    target = served.url.replace("0.0.0.0", "127.0.0.1")
    assert http(target, "GET", "/info", headers={"host": host, **served.auth()}).status == status


def test_a_body_over_the_limit_is_413_even_when_chunked(serve: Callable[..., Served]) -> None:
    served = serve(max_body_bytes=2048)

    async def chunked() -> bytes:
        host, port = served.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        chunk = b"x" * 1000
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
        writer.write(b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return raw

    raw = asyncio.run(chunked())
    assert raw.startswith(b"HTTP/1.1 413")
    assert http(served.url, "POST", "/mcp", PING, JSON_HEADERS).status == 200


class _HangingNats:
    def __init__(self) -> None:
        self.calls = 0

    async def nats_stats(self) -> dict[str, Any]:
        self.calls += 1
        await asyncio.Event().wait()
        return {}


def test_a_request_that_runs_too_long_gets_504(serve: Callable[..., Served]) -> None:
    nats = _HangingNats()
    served = serve(request_timeout_s=0.2, backends={"nats": nats})
    reply = http(served.url, "GET", "/stats/nats")
    assert reply.status == 504
    assert reply.json()["error"]["code"] == "timeout"
    assert nats.calls == 1


def test_an_mcp_request_that_runs_too_long_gets_a_jsonrpc_timeout(serve: Callable[..., Served]) -> None:
    served = serve(request_timeout_s=0.3)
    served.runtime.spawn("echo", "sleepy")
    reply = rpc(served, "tools/call", {"name": "send_command",
                                       "arguments": {"agent_id": "sleepy", "command": "hang", "timeout_s": 20}})
    assert reply.status == 200
    assert reply.json()["error"]["code"] == -32001
    assert "0.3 s" in reply.json()["error"]["message"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_a_non_loopback_bind_needs_a_token_or_allow_insecure(host: str) -> None:
    with pytest.raises(SpecError) as refused:
        WebConfig(host=host).check_bind()
    assert refused.value.key == "host"
    assert "MISTERSMITH_API_TOKEN" in refused.value.message and "allow_insecure" in refused.value.message
    WebConfig(host=host, api_token=TOKEN).check_bind()
    WebConfig(host=host, allow_insecure=True).check_bind()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.1.2.3"])
def test_loopback_binds_need_no_token(host: str) -> None:
    WebConfig(host=host).check_bind()


def test_the_server_refuses_to_start_on_a_public_address_without_a_token(real_runtime: Any) -> None:
    app = build_app(Backends(real_runtime), WebConfig(host="0.0.0.0", port=0))

    async def start() -> None:
        await HttpServer(app).start()

    with pytest.raises(SpecError):
        asyncio.run(start())


def test_the_token_comes_from_the_environment() -> None:
    config = WebConfig.from_env({"MISTERSMITH_API_TOKEN": TOKEN}, port=0)
    assert config.api_token == TOKEN and config.secured
    assert not WebConfig.from_env({}).secured
    with pytest.raises(SpecError):
        WebConfig.from_env({}, prot=1)
    with pytest.raises(SpecError):
        WebConfig(api_token="short")


@pytest.mark.parametrize(("key", "value"), [("port", -1), ("port", 70000), ("max_body_bytes", 10),
                                            ("rate_per_s", 0), ("request_timeout_s", float("inf")),
                                            ("max_streams", 0), ("keepalive_s", -1), ("allowed_origins", "x"),
                                            ("allowed_hosts", "node.example"), ("allowed_hosts", ("https://x",)),
                                            ("allowed_hosts", ("a b",)), ("allowed_hosts", ("x:port",)),
                                            ("allowed_hosts", ("",)), ("header_timeout_s", 0),
                                            ("max_connections_per_client", 0), ("max_sessions", 0),
                                            ("session_idle_s", float("nan"))])
def test_config_values_are_checked_eagerly(key: str, value: Any) -> None:
    with pytest.raises(SpecError) as bad:
        WebConfig(**{key: value})
    assert bad.value.key == key


# The node's settings that map onto WebConfig fields this way; WebConfig takes its defaults from them.
NODE_SETTINGS = {"http.host": "host", "http.port": "port", "http.request_timeout_s": "request_timeout_s",
                 "http.api_token": "api_token", "http.allow_insecure": "allow_insecure",
                 "http.rate_limit_per_s": "rate_per_s", "http.rate_limit_burst": "rate_burst",
                 "http.sse_max_streams": "max_streams", "http.sse_keepalive_s": "keepalive_s",
                 "http.max_body_bytes": "max_body_bytes", "http.cors_origins": "cors_origins",
                 "http.allowed_hosts": "allowed_hosts", "http.header_timeout_s": "header_timeout_s",
                 "http.max_connections_per_client": "max_connections_per_client",
                 "http.mcp_max_sessions": "max_sessions", "http.mcp_session_idle_s": "session_idle_s",
                 "http.tls_cert": "tls_cert", "http.tls_key": "tls_key"}


def test_node_settings_default_to_the_web_config_defaults() -> None:
    from dataclasses import fields

    from mistersmith.config import SETTINGS, load_settings

    defaults = {f.name: f.default for f in fields(WebConfig)}
    by_key = {s.key: s.default for s in SETTINGS}
    assert {key: by_key[key] for key in NODE_SETTINGS} == {key: defaults[name] for key, name in NODE_SETTINGS.items()}
    settings = load_settings({}, {"MISTERSMITH_HTTP_ALLOWED_HOSTS": "node.example, 10.0.0.5:8443",
                                  "MISTERSMITH_HTTP_MCP_MAX_SESSIONS": "50"})
    assert settings["http.allowed_hosts"] == ("node.example", "10.0.0.5:8443")
    assert settings["http.mcp_max_sessions"] == 50


def test_oversized_and_garbage_bodies_never_hurt_the_next_request(serve: Callable[..., Served]) -> None:
    served = serve(max_body_bytes=1024)
    for body in (b"\xff\xfe\x00garbage", b"{" * 2000):
        reply = http(served.url, "POST", "/mcp", body, JSON_HEADERS)
        assert reply.status in (400, 413)
    long_method = http(served.url, "POST", "/mcp", orjson.dumps({"jsonrpc": "2.0", "method": "x" * 900, "id": 1}),
                       JSON_HEADERS)
    assert long_method.json()["error"]["code"] == -32601
    assert len(long_method.body) < 400  # the unknown name is not echoed back whole
    assert rpc(served, "ping").json()["result"] == {}
