"""``WebConfig``: every knob of the HTTP shim, validated eagerly.

A knob that is also a node setting takes its default from ``mistersmith.config``
(``default("http...")``), where every default is stated once; the others
(``stream_buffer``, ``server_name``...) are stated here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from mistersmith import checks
from mistersmith.config import default
from mistersmith.errors import SpecError
from mistersmith.tokens import TokenEntry

__all__ = ["TOKEN_ENV", "WILDCARD_HOSTS", "WebConfig", "host_and_port", "is_loopback"]

TOKEN_ENV = "MISTERSMITH_API_TOKEN"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Bind addresses that mean every interface: they name no host a client would send as its Host."""


def host_and_port(value: str) -> tuple[str, str | None] | None:
    """``(name, port)`` of a ``Host`` value (``name[:port]``, ``[v6][:port]``), lower-cased, without brackets.

    A bare IPv6 address (``::1``) is read as a name without a port. None when
    it is not a host: empty, whitespace, a path, a URL, a bad port.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif value.count(":") > 1:
        name, port = value, None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, colon, port_text = value.partition(":")
        port = port_text if colon else None
    if not name or any(c.isspace() or c in "/@?#[]" for c in name):
        return None
    if port is not None and not (port.isdigit() and len(port) <= 5):
        return None
    return name, port


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1 are loopback; anything else (0.0.0.0 included) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebConfig:
    """How the shim listens and what it lets through.

    - ``host``/``port``: the bind address (port 0: any free port).
    - ``api_token``: the bearer token every route but ``/health`` needs
      (``None``: no authentication, allowed only on loopback unless
      ``allow_insecure``); it has every scope.
    - ``tokens``: scoped tokens (``mistersmith.scopes.TokenEntry``, the
      ``[[auth.tokens]]`` entries); with any, or ``api_token``, every route
      but ``/health`` needs a token, and each call its scope.
    - ``allowed_origins``: browser origins allowed besides loopback ones (a
      present ``Origin`` header outside them is refused with 403);
      ``cors_origins``: origins that get CORS headers (CORS is off when empty).
    - ``max_body_bytes``: larger request bodies get 413.
    - ``rate_per_s``/``rate_burst``: a token bucket per client address
      (``None``: no rate limit); an empty bucket answers 429.
    - ``request_timeout_s``: a request (not a stream) still running after
      this gets 504 (MCP: a JSON-RPC error).
    - ``max_streams``: concurrent ``/discoveries/stream`` connections; the
      next gets 503 with ``Retry-After``. ``keepalive_s``: SSE comment period.
      ``stream_buffer``: discoveries one stream may lag behind before it is
      closed (the client resumes with ``Last-Event-ID``).
    - ``max_sessions``/``session_idle_s``: MCP sessions kept, and for how long unused.
    - ``allowed_hosts``: ``Host`` header values answered besides ``localhost``,
      ``127.0.0.1``, ``[::1]`` and the bound host (when it is not a wildcard
      such as ``0.0.0.0``); a name (any port) or ``name:port``, or ``*`` for any
      Host. Others get 421 on every route but ``/health`` (DNS-rebinding protection).
    - ``header_timeout_s``: how long a connection may go without a complete
      request head, from its start or from its previous response (it bounds
      idle keep-alive connections and slow headers alike, and TLS handshakes).
    - ``max_connections_per_client``: open connections per client address; the
      next one is closed as soon as it is accepted.
    - ``tls_cert``/``tls_key``: PEM files (both or neither); with them the
      server speaks HTTPS only.
    """

    host: str = default("http.host")
    port: int = default("http.port")
    api_token: str | None = default("http.api_token")
    tokens: tuple[TokenEntry, ...] = default("auth.tokens")
    allow_insecure: bool = default("http.allow_insecure")
    allowed_origins: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = default("http.cors_origins")
    max_body_bytes: int = default("http.max_body_bytes")
    rate_per_s: float | None = default("http.rate_limit_per_s")
    rate_burst: int = default("http.rate_limit_burst")
    request_timeout_s: float = default("http.request_timeout_s")
    max_streams: int = default("http.sse_max_streams")
    keepalive_s: float = default("http.sse_keepalive_s")
    stream_buffer: int = 1024
    max_sessions: int = default("http.mcp_max_sessions")
    session_idle_s: float = default("http.mcp_session_idle_s")
    server_name: str = "mistersmith"
    allowed_hosts: tuple[str, ...] = default("http.allowed_hosts")
    header_timeout_s: float = default("http.header_timeout_s")
    max_connections_per_client: int = default("http.max_connections_per_client")
    tls_cert: str | None = default("http.tls_cert")
    tls_key: str | None = default("http.tls_key")

    def __post_init__(self) -> None:
        checks.text("host", self.host, allowed="use an IP address or host name")
        checks.port("port", self.port)
        if self.api_token is not None and (not isinstance(self.api_token, str) or len(self.api_token) < 16
                                           or not self.api_token.isprintable() or " " in self.api_token):
            raise SpecError(None, "api_token", "***", "use at least 16 printable characters without spaces")
        if not isinstance(self.tokens, tuple) or not all(isinstance(t, TokenEntry) for t in self.tokens):
            raise SpecError(None, "tokens", self.tokens, "use a tuple of mistersmith.scopes.TokenEntry")
        for key in ("allowed_origins", "cors_origins"):
            value = getattr(self, key)
            if not isinstance(value, tuple) or not all(isinstance(o, str) and o for o in value):
                raise SpecError(None, key, value, "use a tuple of origins such as 'https://app.example.com'")
        checks.count("max_body_bytes", self.max_body_bytes, minimum=1024, maximum=1 << 30)
        if self.rate_per_s is not None:
            checks.number("rate_per_s", self.rate_per_s)
        checks.count("rate_burst", self.rate_burst, maximum=1 << 30)
        checks.seconds("request_timeout_s", self.request_timeout_s)
        checks.count("max_streams", self.max_streams, maximum=1_000_000)
        checks.seconds("keepalive_s", self.keepalive_s)
        checks.count("stream_buffer", self.stream_buffer, maximum=1 << 20)
        checks.count("max_sessions", self.max_sessions, maximum=1 << 24)
        checks.seconds("session_idle_s", self.session_idle_s)
        if not isinstance(self.allowed_hosts, tuple) or not all(
                isinstance(h, str) and (h == "*" or host_and_port(h) is not None) for h in self.allowed_hosts):
            raise SpecError(None, "allowed_hosts", self.allowed_hosts,
                            "use a tuple of host names or addresses, each optionally with :port, such as "
                            "'mistersmith.internal' or '10.0.0.5:8080' (not URLs), or '*' for any Host")
        checks.seconds("header_timeout_s", self.header_timeout_s)
        checks.count("max_connections_per_client", self.max_connections_per_client, maximum=1 << 20)
        for key in ("tls_cert", "tls_key"):
            if getattr(self, key) is not None:
                checks.text(key, getattr(self, key), allowed="use the path of a PEM file")
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise SpecError(None, missing, None, "set tls_cert and tls_key together (the certificate chain and "
                                                 "its private key), or neither to serve plain HTTP")

    @property
    def secured(self) -> bool:
        return self.api_token is not None or bool(self.tokens)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check_bind(self) -> None:
        """Refuse a non-loopback bind without a token, unless ``allow_insecure``."""
        if not is_loopback(self.host) and not self.secured and not self.allow_insecure:
            raise SpecError(None, "host", self.host,
                            f"a non-loopback address needs a token: set {TOKEN_ENV} (or api_token), bind to "
                            "127.0.0.1, or pass allow_insecure=True to serve it unauthenticated")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebConfig:
        """Defaults, then ``MISTERSMITH_API_TOKEN`` from ``env`` (``os.environ``), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        token = env.get(TOKEN_ENV)
        if token:
            values["api_token"] = token
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise SpecError(None, unknown[0], overrides[unknown[0]], f"use one of: {', '.join(sorted(names))}")
        values.update(overrides)
        return cls(**values)

