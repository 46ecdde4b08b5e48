"""``HttpServer``: Hypercorn serving a ``WebApp`` on the node's event loop.

``await server.start()`` binds the socket (so ``port`` is known, port 0
included) and returns; ``await server.stop()`` ends the SSE streams, then
shuts Hypercorn down gracefully within ``graceful_timeout_s``. A non-loopback
bind without a token is refused (``SpecError``) unless the config says
``allow_insecure``; one with a token but without TLS is logged as a warning.

The server accepts connections itself and hands each one to Hypercorn's
connection handler (``TCPServer``, see ``_Connection``): that is where the per-client connection
cap (``ConnectionLimit``) sits, which no Hypercorn setting offers. Timeouts
are Hypercorn's: its ``keep_alive_timeout`` runs from a connection's start
and from the end of each response until the next request head is complete,
so it is the header timeout and the keep-alive idle timeout at once, and it
is set to ``header_timeout_s``. (Its ``read_timeout`` would not do: it
applies to every read, and would cut SSE streams and long requests, during
which the client sends nothing.) A slow-headers client and an idle one hold a
connection equally, so one short bound for both is what protects the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, cast

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.typing import AppWrapper
from hypercorn.utils import wrap_app

from mistersmith.errors import RuntimeClosedError, SpecError

from .app import WebApp
from .config import WILDCARD_HOSTS, is_loopback
from .connections import ConnectionLimit

__all__ = ["HttpServer", "listen"]

logger = logging.getLogger("mistersmith.web.server")


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), for ``HttpServer.start(sock)``.

    A node binds it before it starts anything else, so a port in use
    (``OSError``, ``errno.EADDRINUSE``) stops it before its embedded servers
    are started or created.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class _Connection(TCPServer):
    """Hypercorn's connection handler, ending as soon as an idle client hangs up.

    Hypercorn's own waits for its keep-alive timer first, holding the socket
    (and the client's place under the cap) for up to ``header_timeout_s``.
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()  # the client sent EOF: no request can follow


class HttpServer:
    """One listening socket, one Hypercorn, on the running loop."""

    def __init__(self, app: WebApp, *, graceful_timeout_s: float = 5.0, backlog: int = 2048) -> None:
        self.app = app
        self.config = app.config
        self.graceful_timeout_s = graceful_timeout_s
        self.backlog = backlog
        self.port: int | None = None
        self.connections = ConnectionLimit(app.config.max_connections_per_client)
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeClosedError("the server is not started; await server.start() first")
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"

    async def start(self, sock: socket.socket | None = None) -> None:
        """Bind (or take ``sock``, from ``listen``) and start serving; returns once the socket listens
        (connections queue until accepted). Once serving, the server owns ``sock`` and closes it when
        it stops; if a check fails first, the caller still holds it (closing it again is harmless)."""
        if self._task is not None:
            raise RuntimeClosedError("this server was started already; make a new HttpServer")
        config = self.config
        config.check_bind()
        hc = Config()
        hc.accesslog = None
        hc.errorlog = logging.getLogger("mistersmith.web.hypercorn")
        hc.graceful_timeout = self.graceful_timeout_s
        hc.backlog = self.backlog
        hc.keep_alive_timeout = config.header_timeout_s
        hc.ssl_handshake_timeout = config.header_timeout_s
        hc.certfile, hc.keyfile = config.tls_cert, config.tls_key
        tls = self._tls_context(hc)
        sock = sock if sock is not None else listen(config.host, config.port, self.backlog)
        try:
            self.port = int(sock.getsockname()[1])
            app = wrap_app(cast(Any, self.app), hc.wsgi_max_body_size, "asgi")
            context = WorkerContext(None)
            listener = await asyncio.start_server(
                lambda reader, writer: self._connected(app, hc, context, reader, writer), sock=sock,
                backlog=self.backlog, ssl=tls, ssl_handshake_timeout=hc.ssl_handshake_timeout if tls else None)
        except BaseException:
            sock.close()
            raise
        self._task = asyncio.create_task(self._serve(listener, context), name="mistersmith-http")
        if not is_loopback(config.host) and config.secured and tls is None:
            logger.warning("serving plain HTTP on %s, a non-loopback address, with a bearer token: the token and "
                           "every reply cross the network unencrypted; set http.tls_cert and http.tls_key (or "
                           "put a TLS-terminating reverse proxy in front and bind to 127.0.0.1)", self.url)
        if config.host.strip("[]") in WILDCARD_HOSTS and not config.allowed_hosts:
            logger.info("bound to %s: requests must name localhost, 127.0.0.1 or [::1] as their Host; list the "
                        "names and addresses clients use in http.allowed_hosts (only /health answers any Host)",
                        config.host)
        logger.info("serving %s on %s", "HTTPS" if tls else "HTTP", self.url)

    @staticmethod
    def _tls_context(hc: Config) -> ssl.SSLContext | None:
        """Hypercorn's TLS context for ``certfile``/``keyfile`` (None without them), loaded now so a bad
        file stops ``start`` with a ``SpecError`` that names it."""
        try:
            return hc.create_ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise SpecError(None, "tls_cert", hc.certfile,
                            f"the certificate {hc.certfile!r} and key {hc.keyfile!r} could not be loaded ({exc}); "
                            "use readable PEM files, the key matching the certificate") from exc

    async def _connected(self, app: AppWrapper, hc: Config, context: WorkerContext,
                         reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One accepted connection (a task of its own): counted, then served by Hypercorn, or closed."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        if not self.connections.acquire(client):
            self.app.metrics.refused("connections")
            writer.close()
            return
        try:
            await _Connection(app, asyncio.get_running_loop(), hc, context, {}, reader, writer)
        finally:
            await self.connections.release(client)

    async def _serve(self, listener: asyncio.Server, context: WorkerContext) -> None:
        """Serve until ``stop``; then close idle connections, let the others finish (bounded), cancel the rest."""
        try:
            await self._shutdown.wait()
        finally:
            listener.close()
            await context.terminated.set()  # Hypercorn closes idle connections, and busy ones after their reply
            if self._handlers:
                _, pending = await asyncio.wait(set(self._handlers), timeout=self.graceful_timeout_s)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
            await listener.wait_closed()

    async def stop(self) -> None:
        """End the streams, stop accepting, let requests in flight finish (bounded), return."""
        if self._task is None or self._task.done():
            return
        self.app.close_streams()
        try:
            await asyncio.wait_for(self.app.wait_streams_closed(), self.graceful_timeout_s)
        except TimeoutError:
            logger.warning("%d SSE streams still open at shutdown", self.app.streams.active + self.app.events.active)
        self._shutdown.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.graceful_timeout_s + 5.0)
        except TimeoutError:
            logger.error("HTTP server did not stop within %.1f s; cancelled", self.graceful_timeout_s + 5.0)
            self._task.cancel()
        self.app.metrics.shutdown()
