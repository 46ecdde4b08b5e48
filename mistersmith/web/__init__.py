"""The HTTP shim: MCP at ``/mcp``, health, info, stats, metrics and the discovery SSE stream.

It depends only on the Runtime, ``mistersmith.errors``, the discovery model
and the ports (``mistersmith.ports``); the node wires the other edges in
through ``Backends``::

    app = build_app(Backends(runtime, discoveries=hub), WebConfig.from_env())
    server = HttpServer(app)
    await server.start()      # on the node's event loop
    ...
    await server.stop()
"""

from .app import WebApp, build_app
from .backends import Backends, UnavailableError, check_health
from .config import TOKEN_ENV, WebConfig
from .server import HttpServer
from .tools import TOOLS, Tool

__all__ = [
    "TOKEN_ENV",
    "TOOLS",
    "Backends",
    "HttpServer",
    "Tool",
    "UnavailableError",
    "WebApp",
    "WebConfig",
    "build_app",
    "check_health",
]
