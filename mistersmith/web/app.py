"""``build_app``: the Starlette app, from the ``Backends`` and a ``WebConfig``.

Routes: ``/mcp`` (see ``mcp``), ``/health``, ``/info``, ``/stats/nats``,
``/stats/discoveries``, ``/cluster``, ``/metrics``, ``/discoveries/stream``
(see ``sse``), ``/events/stream`` (see ``event_stream``) and the console under
``/ui`` (see ``console``). The ``Guard`` (see ``security``) wraps them all; CORS sits inside
it and is off unless ``cors_origins`` names origins.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mistersmith import __version__, tracing
from mistersmith.errors import MisterSmithError
from mistersmith.subjects import SUBJECT_TEMPLATES
from mistersmith.timelines import MemoryTimeline

from .backends import Backends, check_health
from .config import WebConfig
from .console import Console
from .event_stream import SupervisionStream
from .mcp import HANDSHAKE_VERSIONS, MODERN_VERSIONS, McpEndpoint
from .metrics import CONTENT_TYPE, Metrics
from .security import Guard
from .traced import traced
from .sessions import SessionStore
from .sse import DiscoveryStream
from .tools import TOOLS

__all__ = ["WebApp", "build_app"]

ROUTES = ("/mcp", "/health", "/info", "/stats/nats", "/stats/discoveries", "/cluster", "/metrics",
          "/discoveries/stream", "/events/stream", "/ui")
STREAMS = ("/discoveries/stream", "/events/stream", "/ui/api/discoveries/stream", "/ui/api/events/stream")


def _unavailable(what: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "unavailable", "message": f"{what} is not available on this node"}}, 503)


class WebApp:
    """The ASGI app plus the parts a server or a test wants to reach."""

    def __init__(self, backends: Backends, config: WebConfig) -> None:
        self.backends = backends
        self.config = config
        self.streams = DiscoveryStream(backends, config)
        self.timeline = backends.timeline if backends.timeline is not None else MemoryTimeline(backends.runtime)
        self.events = SupervisionStream(backends, config, self.timeline)
        self.console = Console(backends, config, self.timeline, {
            "/events/stream": self.events, "/discoveries/stream": self.streams, "/cluster": self.cluster})
        self.metrics = Metrics({"runtime": self._runtime_gauges, "discoveries": self._discovery_gauges})
        self.sessions = SessionStore(config.max_sessions, config.session_idle_s)
        self.mcp = McpEndpoint(backends, TOOLS, self.sessions, self.metrics,
                               request_timeout_s=config.request_timeout_s, server_name=config.server_name)
        middleware = []
        if config.cors_origins:
            middleware.append(Middleware(
                CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Accept", "Mcp-Session-Id", "MCP-Protocol-Version",
                               "Mcp-Method", "Mcp-Name", "Last-Event-ID"],
                expose_headers=["Mcp-Session-Id", "WWW-Authenticate", "Retry-After"]))
        self.starlette = Starlette(routes=[
            Route("/mcp", self.mcp.__call__, methods=["POST", "GET", "DELETE"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/info", self.info, methods=["GET"]),
            Route("/stats/nats", self.nats_stats, methods=["GET"]),
            Route("/stats/discoveries", self.discovery_stats, methods=["GET"]),
            Route("/cluster", self.cluster, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/discoveries/stream", self.streams, methods=["GET"]),
            Route("/events/stream", self.events, methods=["GET"]),
            *self.console.routes(),
        ], middleware=middleware)
        self.guard = Guard(self.starlette, config, self.metrics, streams=STREAMS, routes=ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if tracing.enabled and scope["type"] == "http":
            await traced(self.guard, scope, receive, send)
            return
        await self.guard(scope, receive, send)

    def close_streams(self) -> None:
        """End every open SSE stream (before a graceful shutdown)."""
        self.streams.close_all()
        self.events.close_all()

    async def wait_streams_closed(self) -> None:
        """Return once every SSE stream has ended, and the supervision event feed with them."""
        await self.streams.wait_active(0)
        await self.events.wait_active(0)
        await self.events.aclose()

    # -- gauges read at scrape time -------------------------------------------------

    def _runtime_gauges(self) -> dict[str, float]:
        stats = self.backends.runtime.stats()
        return {k: float(v) for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def _discovery_gauges(self) -> dict[str, float]:
        hub = self.backends.discoveries
        return {"sse_streams": float(self.streams.active), "sse_rejected": float(self.streams.rejected),
                "mcp_sessions": float(len(self.sessions)),
                "shared": float(hub.stats().get("total", 0)) if hub is not None else 0.0}

    # -- endpoints ------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        report = await check_health(self.backends)
        return JSONResponse(report, 503 if report["status"] == "down" else 200)

    async def info(self, request: Request) -> Response:
        b = self.backends
        capabilities = ["mcp", "health", "metrics", "replay", "events", "console"]
        if b.discoveries is not None:
            capabilities += ["discoveries", "sse"]
        if b.tasks is not None:
            capabilities.append("tasks")
        if b.history is not None:
            capabilities.append("journal")
        if b.nats is not None:
            capabilities.append("nats")
        if b.cluster is not None:
            capabilities.append("cluster")
        return JSONResponse({
            "name": self.config.server_name,
            "version": __version__,
            "node_id": b.runtime.node_id,
            "protocol_versions": [*HANDSHAKE_VERSIONS, *MODERN_VERSIONS],
            "capabilities": capabilities,
            "tools": list(TOOLS),
            "endpoints": {path: path for path in ROUTES},
            "subjects": dict(SUBJECT_TEMPLATES),
            "auth": "bearer" if self.config.secured else "none",
        })

    async def nats_stats(self, request: Request) -> Response:
        if self.backends.nats is None:
            return _unavailable("NATS (this node runs without the bridge)")
        return JSONResponse(await self.backends.nats.nats_stats())

    async def discovery_stats(self, request: Request) -> Response:
        if self.backends.discoveries is None:
            return _unavailable("discovery sharing")
        stats: dict[str, Any] = dict(self.backends.discoveries.stats())
        stats["sse"] = {"active": self.streams.active, "max": self.config.max_streams,
                        "rejected": self.streams.rejected, "served": self.streams.served}
        return JSONResponse(stats)

    async def cluster(self, request: Request) -> Response:
        """Every node's membership row (the shared ``nodes`` table), as the MCP ``list_nodes`` tool."""
        if self.backends.cluster is None:
            return _unavailable("the cluster (this node is not in one)")
        try:
            nodes = await self.backends.cluster.nodes()
        except MisterSmithError as exc:  # PostgreSQL is away: say so, as the tool would
            return JSONResponse({"error": exc.to_dict()}, 503 if exc.code == "unavailable" else 500)
        return JSONResponse({"node_id": self.backends.runtime.node_id, "nodes": nodes})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def build_app(backends: Backends, config: WebConfig | None = None) -> WebApp:
    """The web shim over ``backends``; serve it with ``HttpServer`` (or any ASGI server)."""
    return WebApp(backends, config if config is not None else WebConfig())
