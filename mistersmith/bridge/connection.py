"""Connecting to NATS: options (servers, auth, TLS, pings, reconnect backoff) and counters.

``ConnectOptions`` is data, validated eagerly; every default is stated here once
(``ping_interval_s``, a node setting too, comes from ``mistersmith.config``):

- ``ping_interval_s=30`` (``nats.ping_interval_s``), ``max_outstanding_pings=2``:
  a dead server is noticed within about a minute even when nothing is published;
- reconnects back off exponentially, ``reconnect_base_s * 2**attempt`` capped at
  ``reconnect_max_s``, with +/-``reconnect_jitter`` (a fraction) of jitter;
- the first connection is retried ``initial_connect_retries`` times per server
  (with the same backoff) and then fails with ``NatsUnavailableError``, so a
  wrong URL or bad credentials stop a node at start instead of hanging it; a refusal
  once connected (TLS: ``bridge.tls.explain`` says what was wrong; credentials) fails at once;
- once connected, ``max_reconnect_attempts=-1``: **never give up**. A long-running node that
  gave up after a short outage would stay deaf until someone restarted it;
  with the backoff capped at ``reconnect_max_s`` an unlimited number of tries
  costs one connection attempt per server every few seconds at most;
- ``pending_size``: what nats-py buffers while disconnected (bounded); past it a
  publish raises and the bridge counts and logs the loss.

``connect()`` returns a connected ``nats.aio.client.Client`` whose callbacks
log and count disconnects, reconnects, errors and slow consumers into a
``ConnectionStats``. Runs on the node's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError

from mistersmith import checks
from mistersmith.config import default
from mistersmith.errors import SpecError
from mistersmith.redact import strip_userinfo

from .errors import NatsUnavailableError
from .tls import Client, client_context, explain

__all__ = ["ConnectOptions", "ConnectionStats", "connect", "reconnect_delay_s"]

logger = logging.getLogger("mistersmith.bridge.connection")


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How to reach NATS. ``servers`` is one URL or several (a cluster)."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    name: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ping_interval_s: float = default("nats.ping_interval_s")
    max_outstanding_pings: int = 2
    connect_timeout_s: float = 5.0
    reconnect_base_s: float = 0.25
    reconnect_max_s: float = 3.0  # with the jitter, a try every <= 3.6 s: back within 5 s of a server's return
    reconnect_jitter: float = 0.2
    max_reconnect_attempts: int = -1
    initial_connect_retries: int = 3
    pending_size: int = 8 * 1024 * 1024
    drain_timeout_s: float = 5.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            object.__setattr__(self, "servers", (self.servers,))
        if not self.servers or not all(isinstance(s, str) and "://" in s for s in self.servers):
            raise SpecError(None, "servers", self.servers, "use nats:// or tls:// URLs")
        for key in ("ping_interval_s", "connect_timeout_s", "reconnect_base_s", "reconnect_max_s",
                    "drain_timeout_s"):
            checks.seconds(key, getattr(self, key))
        if self.reconnect_max_s < self.reconnect_base_s:
            raise SpecError(None, "reconnect_max_s", self.reconnect_max_s, "use a value >= reconnect_base_s")
        checks.number("reconnect_jitter", self.reconnect_jitter, strict=False, allowed="use a fraction in [0, 1)")
        if self.reconnect_jitter >= 1:
            raise SpecError(None, "reconnect_jitter", self.reconnect_jitter, "use a fraction in [0, 1)")
        if self.max_reconnect_attempts != -1:
            checks.count("max_reconnect_attempts", self.max_reconnect_attempts,
                         allowed="use -1 (never give up; the default) or a count >= 1")
        checks.count("initial_connect_retries", self.initial_connect_retries)
        checks.count("max_outstanding_pings", self.max_outstanding_pings)
        checks.count("pending_size", self.pending_size, minimum=1024)
        if self.password is not None and self.user is None:
            raise SpecError(None, "password", "***", "give a user with the password")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SpecError(None, "tls_cert/tls_key", "***", "give the client certificate and its key together")

    @classmethod
    def from_settings(cls, settings: Any, servers: tuple[str, ...] | None = None, **overrides: Any) -> ConnectOptions:
        """From a ``mistersmith.config.Settings`` (``servers`` overrides ``nats.url``, e.g. the embedded server's)."""
        urls = servers or settings["nats.url"]
        if not urls:
            raise SpecError(None, "nats.url", None, "set it, or start the embedded server and pass its url")
        values: dict[str, Any] = {
            "servers": tuple(urls),
            "ping_interval_s": settings["nats.ping_interval_s"],
            "user": settings["nats.user"],
            "password": settings["nats.password"],
            "token": settings["nats.token"],
            "creds_file": settings["nats.creds_file"],
            "nkey_seed_file": settings["nats.nkey_seed_file"],
            "tls_ca": settings["nats.tls_ca"],
            "tls_cert": settings["nats.tls_cert"],
            "tls_key": settings["nats.tls_key"],
        }
        values.update(overrides)
        return cls(**values)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``tls://`` servers, a CA or a client certificate; else ``None``
        (``bridge.tls``: a file that cannot be read is a ``SpecError`` naming its setting)."""
        return client_context(self.servers, self.tls_ca, self.tls_cert, self.tls_key)

    def describe(self) -> str:
        """The servers, without credentials (for logs and errors)."""
        return ", ".join(strip_userinfo(s) for s in self.servers)


def reconnect_delay_s(attempt: int, options: ConnectOptions, rng: random.Random | None = None) -> float:
    """The wait before reconnect try number ``attempt`` (0 for the first): exponential, capped, jittered."""
    base = min(options.reconnect_max_s, options.reconnect_base_s * 2.0 ** min(attempt, 32))
    uniform = rng.uniform if rng is not None else random.uniform
    jitter: float = uniform(-options.reconnect_jitter, options.reconnect_jitter)
    return max(0.0, base * (1 + jitter))


class ConnectionStats:
    """Counters of one connection's troubles; every increment is also logged.

    Updated on the event loop (by the connection's callbacks); ``wait_for``
    lets a caller on that loop wait for a condition on them.
    """

    def __init__(self) -> None:
        self.disconnects = 0
        self.reconnects = 0
        self.errors = 0
        self.slow_consumers = 0
        self.closed = False
        self.last_error: str | None = None
        self._changed: asyncio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, predicate: Callable[[ConnectionStats], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked on every change); False after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed = self._changed or asyncio.Event()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate(self)
        return True

    def snapshot(self) -> dict[str, Any]:
        return {
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "slow_consumers": self.slow_consumers,
            "closed": self.closed,
            "last_error": self.last_error,
        }


async def connect(options: ConnectOptions, stats: ConnectionStats | None = None) -> tuple[NATS, ConnectionStats]:
    """Connect and wire the counters in; ``NatsUnavailableError`` if no server accepts us now."""
    stats = stats or ConnectionStats()
    where = options.describe()
    failures: list[Exception] = []

    async def on_error(error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            stats.slow_consumers += 1
            stats._notify()
            logger.warning("NATS slow consumer on %s: a message was dropped by the client", error.subject)
            return
        stats.errors += 1
        failures[:] = [*failures[-9:], error]  # the last ones, for a TLS failure's explanation (bridge.tls)
        stats.last_error = f"{type(error).__name__}: {error}"
        stats._notify()
        logger.warning("NATS error (%s): %s", where, stats.last_error)

    async def on_disconnect() -> None:
        if client and client[0].is_closed:
            return  # closed on purpose: not an outage
        stats.disconnects += 1
        stats._notify()
        logger.warning("NATS disconnected from %s; reconnecting with backoff", where)

    async def on_reconnect() -> None:
        stats.reconnects += 1
        stats._notify()
        logger.warning("NATS reconnected to %s", where)

    async def on_closed() -> None:
        stats.closed = True
        stats._notify()
        logger.info("NATS connection to %s closed", where)

    def pick_server(servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        del info
        server = min(servers, key=lambda s: s.reconnects)
        return server, reconnect_delay_s(max(0, server.reconnects), options)

    client: list[NATS] = []
    tls = options.tls_context()
    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "closed_cb": on_closed,
        # Off for the first connection, on once connected (below): nats-py's retry of a failed TLS upgrade
        # waits forever for the broken transport to close. Refused TCP connects are still retried per
        # server, up to max_reconnect_attempts (bounded now, then set to the lasting value).
        "allow_reconnect": False,
        "connect_timeout": options.connect_timeout_s,
        "max_reconnect_attempts": options.initial_connect_retries,
        "reconnect_time_wait": options.reconnect_base_s,
        "reconnect_to_server_handler": pick_server,
        "ping_interval": options.ping_interval_s,
        "max_outstanding_pings": options.max_outstanding_pings,
        "pending_size": options.pending_size,
        "drain_timeout": options.drain_timeout_s,
        "tls": tls,
    }
    if options.user is not None:
        kwargs["user"] = options.user
        kwargs["password"] = options.password
    if options.token is not None:
        kwargs["token"] = options.token
    if options.creds_file is not None:
        kwargs["user_credentials"] = options.creds_file
    if options.nkey_seed_file is not None:
        kwargs["nkeys_seed"] = options.nkey_seed_file
    kwargs.update(options.extra)
    nc = Client(require_tls=tls is not None)  # never in plain text once TLS is asked for (bridge.tls)
    try:
        await nc.connect(**kwargs)
    except (NatsError, OSError, TimeoutError) as exc:
        why = (explain([exc, *failures], options.tls_ca, options.tls_cert, tls=tls is not None)
               or stats.last_error or type(exc).__name__)
        state = f"not connected ({why})"
        raise NatsUnavailableError(f"could not connect to {where} (gave up after {options.initial_connect_retries} retries)",
                                   state) from exc
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = options.max_reconnect_attempts
    client.append(nc)
    return nc, stats
