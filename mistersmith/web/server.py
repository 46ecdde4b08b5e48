"""``HttpServer``: Hypercorn serving a ``WebApp`` on the node's event loop.

``await server.start()`` binds the socket (so ``port`` is known, port 0
included) and returns; ``await server.stop()`` ends the SSE streams, then
shuts Hypercorn down gracefully within ``graceful_timeout_s``. A non-loopback
bind without a token is refused (``SpecError``) unless the config says
``allow_insecure``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from hypercorn.asyncio import serve
from hypercorn.config import Config

from mistersmith.errors import RuntimeClosedError

from .app import WebApp

__all__ = ["HttpServer"]

logger = logging.getLogger("mistersmith.web.server")


class HttpServer:
    """One listening socket, one Hypercorn, on the running loop."""

    def __init__(self, app: WebApp, *, graceful_timeout_s: float = 5.0, backlog: int = 2048) -> None:
        self.app = app
        self.config = app.config
        self.graceful_timeout_s = graceful_timeout_s
        self.backlog = backlog
        self.port: int | None = None
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeClosedError("the server is not started; await server.start() first")
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; returns once the socket listens (connections queue until accepted)."""
        if self._task is not None:
            raise RuntimeClosedError("this server was started already; make a new HttpServer")
        self.config.check_bind()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.create_server((self.config.host, self.config.port), family=family, backlog=self.backlog)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        hc = Config()
        hc.bind = [f"fd://{sock.detach()}"]
        hc.accesslog = None
        hc.errorlog = logging.getLogger("mistersmith.web.hypercorn")
        hc.graceful_timeout = self.graceful_timeout_s
        hc.backlog = self.backlog
        hc.keep_alive_timeout = 75.0
        self._task = asyncio.create_task(self._serve(hc), name="mistersmith-http")
        logger.info("serving HTTP on %s", self.url)

    async def _serve(self, hc: Config) -> None:
        # Hypercorn owns the detached socket from here and closes it when it stops.
        await serve(cast(Any, self.app), hc, shutdown_trigger=self._wait_shutdown, mode="asgi")

    async def _wait_shutdown(self, *args: Any) -> None:
        await self._shutdown.wait()

    async def stop(self) -> None:
        """End the streams, stop accepting, let requests in flight finish (bounded), return."""
        if self._task is None or self._task.done():
            return
        self.app.close_streams()
        try:
            await asyncio.wait_for(self.app.streams.wait_active(0), self.graceful_timeout_s)
        except TimeoutError:
            logger.warning("%d SSE streams still open at shutdown", self.app.streams.active)
        self._shutdown.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.graceful_timeout_s + 5.0)
        except TimeoutError:
            logger.error("HTTP server did not stop within %.1f s; cancelled", self.graceful_timeout_s + 5.0)
            self._task.cancel()
        self.app.metrics.shutdown()
