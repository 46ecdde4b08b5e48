"""``traced``: an ``HTTP {method} {path}`` span around one request, when tracing is on (``mistersmith.tracing``).

The W3C ``traceparent`` of the request's headers is its parent; the span is
current while the app handles the request, so the MCP method's and tool's
spans, and the command they send, nest under it. Its status is the response's.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mistersmith import tracing

__all__ = ["traced"]


async def traced(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
               if k in (b"traceparent", b"tracestate")}
    method, path = scope.get("method", "GET"), scope.get("path", "/")
    with tracing.span(f"HTTP {method} {path}", parent=tracing.extract(headers), kind=tracing.SpanKind.SERVER,
                      attributes={"http.request.method": method, "url.path": path}) as span:

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and span is not None:
                span.set_attribute("http.response.status_code", message["status"])
            await send(message)

        await app(scope, receive, sending)
