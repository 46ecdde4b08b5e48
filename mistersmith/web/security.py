"""``Guard``: the ASGI middleware in front of every route.

In order, for each HTTP request:

1. a ``Host`` that is not loopback, the bound host or in ``allowed_hosts``:
   421 on every route but the public ones (``/health``) (DNS rebinding: a
   browser led to a rebinding name sends that name as the Host);
2. a present ``Origin`` that is neither loopback nor configured: 403
   (cross-site requests);
3. a per-client token bucket (by peer address), on every route but the
   public ones: 429 with ``Retry-After``;
4. the bearer token, resolved to an identity (``mistersmith.scopes``: a
   ``[[auth.tokens]]`` entry by SHA-256, or ``api_token`` with every scope) in
   constant time, on every route but the
   public ones (and CORS preflights): 401 with ``WWW-Authenticate``; on the
   console's paths (``/ui/...``) the console's cookie counts as the token
   (``credential``), and its page and static files need none (``anonymous``);
   then the scope the route needs (``scopes.route_refusal``: its scope, and the
   token's agents glob for a path naming an agent): 403 naming the scope.
   The identity goes in ``scope["mistersmith.identity"]`` (``identity``), and
   the request's actions are recorded as its own in the audit trail;
5. a body larger than ``max_body_bytes``: 413 (read here, before any handler);
6. a request (not a stream, not ``/mcp``, which answers its own timeout as a
   JSON-RPC error) still running after ``request_timeout_s``: 504.

The public routes (``/health``) answer any Host and skip the rate limit:
orchestrators probe them by pod IP or host name, they reveal nothing secret,
and serving ``/health`` reads only in-memory state (no I/O), so it costs
about what a 429 would. A bucket of its own would not do: every local
client shares one address, so any of them could still empty it and make
health checks fail.

It also counts every answer in the metrics, by route and status.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Mapping
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mistersmith.scopes import Identity, route_refusal
from mistersmith.tokens import resolve

from .config import WILDCARD_HOSTS, WebConfig, host_and_port, is_loopback
from .identity import SCOPE_KEY, identity_of, serving
from .metrics import Metrics

__all__ = ["UI_COOKIE", "UI_PREFIX", "Guard", "TokenBuckets", "anonymous", "credential"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
UI_PREFIX = "/ui"
UI_COOKIE = "ms_console"  # set by POST /ui/login (web/console.py): HttpOnly, SameSite=Strict, Path=/ui


def credential(path: str, headers: Mapping[bytes, bytes]) -> bytes | None:
    """The token a request presents: its ``Authorization: Bearer`` header, else, on the
    console's paths (``/ui/...``) only, the console's cookie; ``None`` if it presents none."""
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, token = auth.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" else b""
    if path.startswith(UI_PREFIX + "/"):  # the first one: browsers send the most specific path first
        for pair in headers.get(b"cookie", b"").split(b";"):
            name, _, value = pair.strip().partition(b"=")
            if name == UI_COOKIE.encode() and value:
                return value
    return None


def anonymous(path: str) -> bool:
    """The console's page and static files: no secret in them, and the page is the login."""
    return path in (UI_PREFIX, UI_PREFIX + "/") or path.startswith(UI_PREFIX + "/static/")


class TokenBuckets:
    """One token bucket per client key: ``rate_per_s`` refill, ``burst`` capacity.

    ``take(key)`` returns 0.0 when a token was taken, else the seconds until
    one will be there. At most ``max_clients`` buckets are kept; full ones go first.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._max = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s
        if key not in self._buckets and len(self._buckets) >= self._max:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate_per_s >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, orjson.dumps({"error": {"code": code, "message": message}}), headers or {}


def _forbidden(needed: str | None, message: str) -> tuple[int, bytes, dict[str, str]]:
    """403 naming the scope the path needs (the token is valid, but not for this)."""
    return 403, orjson.dumps({"error": {"code": "forbidden", "message": message, "scope": needed}}), {}


class Guard:
    """Wraps the whole app; see the module docstring for what it checks."""

    def __init__(self, app: ASGIApp, config: WebConfig, metrics: Metrics, *, public: Collection[str] = ("/health",),
                 streams: Collection[str] = (), untimed: Collection[str] = ("/mcp",), routes: Collection[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics
        self.public = frozenset(public)
        self.streams = frozenset(streams)
        self.untimed = frozenset(untimed) | self.streams
        self.routes = frozenset(routes)
        self.origins = frozenset(config.allowed_origins) | frozenset(config.cors_origins)
        self.any_host = "*" in config.allowed_hosts
        self.host_names: set[str] = set(LOOPBACK_HOSTS)
        self.host_ports: set[tuple[str, str | None]] = set()
        bound = config.host.strip("[]").lower()
        if bound not in WILDCARD_HOSTS:
            self.host_names.add(bound)
        for entry in config.allowed_hosts:
            parsed = host_and_port(entry) if entry != "*" else None
            if parsed is not None and parsed[1] is None:
                self.host_names.add(parsed[0])
            elif parsed is not None:
                self.host_ports.add(parsed)
        self._token = config.api_token.encode() if config.api_token is not None else None
        self._tokens = config.tokens
        self.buckets = (TokenBuckets(config.rate_per_s, config.rate_burst, clock)
                        if config.rate_per_s is not None else None)

    def identify(self, token: bytes | None) -> Identity | None:
        """The identity a presented credential stands for (``mistersmith.scopes.resolve``: the scoped
        tokens, and ``api_token`` with every scope); None for no credential or a wrong one."""
        return resolve(token, self._tokens, self._token)

    def origin_allowed(self, origin: str) -> bool:
        if origin in self.origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and parts.hostname is not None and is_loopback(parts.hostname)

    def host_allowed(self, host: str) -> bool:
        """Loopback names, the bound host and ``allowed_hosts`` (a name: any port; ``name:port``: that port)."""
        if self.any_host:
            return True
        parsed = host_and_port(host)
        return parsed is not None and (parsed[0] in self.host_names or parsed in self.host_ports)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, bytes, dict[str, str]] | None:
        public = scope["path"] in self.public
        host = headers.get(b"host", b"").decode("latin-1")
        if not public and not self.host_allowed(host):
            shown = repr(host[:100] + "..." if len(host) > 100 else host) if host else "(none)"
            return _error(421, "misdirected_request",
                          f"Misdirected Request: this server does not answer to Host {shown}; if clients reach it "
                          f"by that name, add the name to the http.allowed_hosts setting (WebConfig.allowed_hosts)")
        origin = headers.get(b"origin")
        if origin is not None and not self.origin_allowed(origin.decode("latin-1")):
            return _error(403, "forbidden_origin", "Forbidden: this Origin may not call this server")
        if self.buckets is not None and not public:
            client = scope.get("client")
            wait_s = self.buckets.take(client[0] if client else "-")
            if wait_s > 0:
                return _error(429, "rate_limited", f"Too Many Requests: retry in {wait_s:.2f} s",
                              {"Retry-After": str(max(1, math.ceil(wait_s)))})
        preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
        if self.config.secured and not public and not preflight and not anonymous(scope["path"]):
            token = credential(scope["path"], headers)
            identity = self.identify(token)
            if identity is None:
                error = ', error="invalid_token"' if token is not None else ""
                return _error(401, "unauthorized", "Unauthorized: send Authorization: Bearer <token> (a token of "
                              "[[auth.tokens]], or MISTERSMITH_API_TOKEN)",
                              {"WWW-Authenticate": f'Bearer realm="mistersmith"{error}'})
            scope[SCOPE_KEY] = identity
            refused = route_refusal(identity, scope["path"])
            if refused is not None:
                return _forbidden(*refused)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body_bytes):
            return self._too_large()
        return None

    def _too_large(self) -> tuple[int, bytes, dict[str, str]]:
        return _error(413, "too_large", f"Payload Too Large: at most {self.config.max_body_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        route = path if path in self.routes else "other"
        status = [0]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_body(receive)
            if body is None:
                refusal = self._too_large()
            else:
                receive = _replay(body, receive)
        try:
            if refusal is not None:
                self.metrics.refused(str(refusal[0]))
                await _respond(counted, *refusal)
            elif path in self.untimed:
                with serving(scope, identity_of(scope)):
                    await self.app(scope, receive, counted)
            else:
                try:
                    async with asyncio.timeout(self.config.request_timeout_s):
                        with serving(scope, identity_of(scope)):
                            await self.app(scope, receive, counted)
                except TimeoutError:
                    if status[0] == 0:
                        await _respond(counted, *_error(504, "timeout", f"Gateway Timeout: no answer within "
                                                                        f"{self.config.request_timeout_s:.1f} s"))
        finally:
            self.metrics.http_request(route, status[0] or 499, time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
