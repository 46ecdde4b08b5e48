"""``WebConfig``: every knob of the HTTP shim, with its default stated once, validated eagerly."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from mistersmith.errors import SpecError

__all__ = ["TOKEN_ENV", "WebConfig", "is_loopback"]

TOKEN_ENV = "MISTERSMITH_API_TOKEN"


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
      ``allow_insecure``).
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
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_token: str | None = None
    allow_insecure: bool = False
    allowed_origins: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    rate_per_s: float | None = 200.0
    rate_burst: int = 400
    request_timeout_s: float = 30.0
    max_streams: int = 1000
    keepalive_s: float = 30.0
    stream_buffer: int = 1024
    max_sessions: int = 10_000
    session_idle_s: float = 3600.0
    server_name: str = "mistersmith"

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise SpecError(None, "host", self.host, "use an IP address or host name")
        _int("port", self.port, 0, 65535)
        if self.api_token is not None and (not isinstance(self.api_token, str) or len(self.api_token) < 16
                                           or not self.api_token.isprintable() or " " in self.api_token):
            raise SpecError(None, "api_token", "***", "use at least 16 printable characters without spaces")
        for key in ("allowed_origins", "cors_origins"):
            value = getattr(self, key)
            if not isinstance(value, tuple) or not all(isinstance(o, str) and o for o in value):
                raise SpecError(None, key, value, "use a tuple of origins such as 'https://app.example.com'")
        _int("max_body_bytes", self.max_body_bytes, 1024, 1 << 30)
        if self.rate_per_s is not None:
            _number("rate_per_s", self.rate_per_s)
        _int("rate_burst", self.rate_burst, 1, 1 << 30)
        _number("request_timeout_s", self.request_timeout_s)
        _int("max_streams", self.max_streams, 1, 1_000_000)
        _number("keepalive_s", self.keepalive_s)
        _int("stream_buffer", self.stream_buffer, 1, 1 << 20)
        _int("max_sessions", self.max_sessions, 1, 1 << 24)
        _number("session_idle_s", self.session_idle_s)

    @property
    def secured(self) -> bool:
        return self.api_token is not None

    def check_bind(self) -> None:
        """Refuse a non-loopback bind without a token, unless ``allow_insecure``."""
        if not is_loopback(self.host) and self.api_token is None and not self.allow_insecure:
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


def _int(key: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(None, key, value, f"use an integer from {low} to {high}")


def _number(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(None, key, value, "use a finite number > 0")
