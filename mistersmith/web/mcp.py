"""``/mcp``: the Model Context Protocol over Streamable HTTP.

Two eras share one endpoint and one set of methods:

- **2025-11-25** (and 2025-06-18, 2025-03-26): ``initialize`` makes a
  session (``Mcp-Session-Id``); later requests carry that id and
  ``MCP-Protocol-Version``. An unknown or expired id gets 404, so the client
  initializes again. A request with no session id is served too (the server
  keeps no per-session state), which is what lets ``curl`` and the design's
  ``list_tools``/``call_tool`` examples work without a handshake.
- **2026-07-28** (stateless): ``server/discover`` and every request carry the
  version, client info and capabilities in ``params._meta``, mirrored in the
  ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers (a
  disagreement is -32020). Results carry ``resultType``; cacheable ones
  ``ttlMs`` and ``cacheScope``. Errors map to HTTP 400/404 as that revision says.

Each POST gets one ``application/json`` reply, but for a ``tools/call`` that
carries ``_meta.progressToken`` from a client that accepts
``text/event-stream``: that one is answered with an SSE stream of
``notifications/progress`` (``send_command``'s progress, as the agent reports
it) and then the response (``tool_calls``). A call is cancelled by
``notifications/cancelled`` naming its request id (2025 revisions) or by the
client closing its POST (2026-07-28, and any client that gives up): the tool's
work stops (the agent's command is cancelled) and no response is sent.
``GET /mcp`` (a server-initiated stream) is 405: this server sends nothing
unprompted. ``DELETE /mcp`` ends a session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mistersmith import __version__, tracing

from .backends import Backends
from .jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
    RpcError,
    encode_error,
    encode_result,
    parse,
)
from .metrics import Metrics
from .resources import TEMPLATES, list_resources, read_resource
from .sessions import SessionStore
from .tool_calls import InFlight, ToolCall
from .tools import Tool, call_tool

__all__ = ["HANDSHAKE_VERSIONS", "LATEST_HANDSHAKE_VERSION", "MODERN_VERSIONS", "McpEndpoint"]

logger = logging.getLogger("mistersmith.web.mcp")

HANDSHAKE_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION = HANDSHAKE_VERSIONS[-1]
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)

VERSION_META = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"

_NAME_PARAM = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
_CACHEABLE_TTL_MS = {"server/discover": 0, "tools/list": 60_000, "resources/templates/list": 60_000,
                     "resources/list": 0, "resources/read": 0}
_MODERN_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
                  UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404}
_INSTRUCTIONS = ("MisterSmith runs agents as supervised actors. Spawn agents with spawn_agent, command them with "
                 "send_command, share findings with share_discovery, and read supervision history with "
                 "replay_events. Resources: agent://{id}, discovery://{id}.")
_JSON = "application/json"
_CALLS = frozenset({"tools/call", "call_tool"})


def _decode_header(value: str | None) -> str | None:
    """The inverse of the ``=?base64?...?=`` wrapping clients use for non-ASCII header values."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _accepts_sse(accept: str | None) -> bool:
    return bool(accept) and any(part.split(";", 1)[0].strip().lower() in ("text/event-stream", "text/*")
                                for part in (accept or "").split(","))


def _progress_token(params: Mapping[str, Any]) -> Any:
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, (str, int)) and not isinstance(token, bool) else None


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (its body was read already: only ``http.disconnect`` is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _json_reply(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, status, headers=headers, media_type=_JSON)


class McpEndpoint:
    """The ``/mcp`` route. Holds the sessions; everything else it asks of ``backends``."""

    def __init__(self, backends: Backends, tools: dict[str, Tool], sessions: SessionStore, metrics: Metrics,
                 *, request_timeout_s: float, server_name: str) -> None:
        self.backends = backends
        self.tools = tools
        self.sessions = sessions
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        self.server_info = {"name": server_name, "title": "MisterSmith", "version": __version__}
        self._tool_list = [t.describe() for t in tools.values()]
        self.inflight = InFlight()

    @property
    def capabilities(self) -> dict[str, Any]:
        return {"tools": {"listChanged": False}, "resources": {"subscribe": False, "listChanged": False}}

    async def __call__(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._post(request)
        if request.method == "DELETE":
            return self._delete(request)
        return Response(status_code=405, headers={"Allow": "POST, DELETE"})

    def _delete(self, request: Request) -> Response:
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            return _json_reply(encode_error(None, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required"),
                               400)
        if not self.sessions.delete(session_id):
            return _json_reply(encode_error(None, INVALID_REQUEST, "Session not found"), 404)
        return Response(status_code=204)

    async def _post(self, request: Request) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != _JSON:
            return _json_reply(encode_error(None, INVALID_REQUEST,
                                            "Unsupported Media Type: send Content-Type: application/json"), 415)
        if not _accepts_json(request.headers.get("accept")):
            return _json_reply(encode_error(None, INVALID_REQUEST,
                                            "Not Acceptable: accept application/json (and text/event-stream)"), 406)
        body = await request.body()
        try:
            message = parse(body)
        except RpcError as error:
            self.metrics.mcp_request("invalid", "error", time.perf_counter() - started)
            return _json_reply(encode_error(None, error.code, error.message, error.data), 400)
        if message.kind == "response":
            return Response(status_code=202)
        modern = self._is_modern(request, message)
        method = message.method if message.method in self._known else "other"
        meta = message.params.get("_meta")
        try:  # its span: the request's _meta.traceparent, else the HTTP request's, is its parent
            with tracing.span(f"mcp {method}", parent=tracing.extract(meta) if isinstance(meta, dict) else None,
                              attributes={"rpc.system": "jsonrpc", "rpc.method": message.method}):
                response = await (self._modern(request, message) if modern else self._legacy(request, message))
        finally:
            self.metrics.mcp_request(method, "notification" if message.kind == "notification" else "done",
                                     time.perf_counter() - started)
        return response

    _known = frozenset({"initialize", "ping", "tools/list", "tools/call", "list_tools", "call_tool",
                        "resources/list", "resources/read", "resources/templates/list", "server/discover",
                        "notifications/initialized", "notifications/cancelled"})

    @staticmethod
    def _is_modern(request: Request, message: Message) -> bool:
        if message.method == "server/discover":
            return True
        meta = message.params.get("_meta")
        if isinstance(meta, dict) and VERSION_META in meta:
            return True
        return request.headers.get(VERSION_HEADER) in MODERN_VERSIONS

    # -- 2025-11-25: sessions ---------------------------------------------------------

    async def _legacy(self, request: Request, message: Message) -> Response:
        header_version = request.headers.get(VERSION_HEADER)
        if header_version is not None and header_version not in HANDSHAKE_VERSIONS and message.method != "initialize":
            return _json_reply(encode_error(message.id, INVALID_REQUEST,
                                            f"Bad Request: unsupported MCP-Protocol-Version {header_version!r}; "
                                            f"use one of {', '.join(HANDSHAKE_VERSIONS)}"), 400)
        session_id = request.headers.get(SESSION_HEADER)
        if session_id and message.method != "initialize" and self.sessions.get(session_id) is None:
            return _json_reply(encode_error(message.id, INVALID_REQUEST,
                                            "Session not found: it ended or expired; initialize again"), 404)
        if message.kind == "notification":
            if message.method == "notifications/cancelled":
                self.inflight.cancel(session_id, message.params.get("requestId"))
            return Response(status_code=202)
        assert message.id is not None
        headers: dict[str, str] = {}
        if message.method in _CALLS:
            return await self._call(request, message, session_id, modern=False)
        try:
            if message.method == "initialize":
                result = self._initialize(message.params, headers)
            else:
                result = await self._bounded(self._dispatch(message.method, message.params, modern=False))
        except RpcError as error:
            return _json_reply(encode_error(message.id, error.code, error.message, error.data), 200)
        return _json_reply(encode_result(message.id, result), 200, headers)

    def _initialize(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, 'Invalid params: "protocolVersion" must be a string')
        for key in ("capabilities", "clientInfo"):
            if key in params and not isinstance(params[key], dict):
                raise RpcError(INVALID_PARAMS, f'Invalid params: "{key}" must be an object')
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION
        client = params.get("clientInfo")
        session = self.sessions.create(version, client if isinstance(client, dict) else {})
        headers["Mcp-Session-Id"] = session.id
        return {"protocolVersion": version, "capabilities": self.capabilities, "serverInfo": self.server_info,
                "instructions": _INSTRUCTIONS}

    # -- 2026-07-28: stateless --------------------------------------------------------

    def _envelope_error(self, request: Request, message: Message) -> RpcError | None:
        meta = message.params.get("_meta")
        if not isinstance(meta, dict) or VERSION_META not in meta or CAPABILITIES_META not in meta:
            return RpcError(INVALID_PARAMS, f"params._meta must carry {VERSION_META!r} and {CAPABILITIES_META!r}")
        version = meta[VERSION_META]
        if request.headers.get(VERSION_HEADER) != version:
            return RpcError(HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
        if request.headers.get(METHOD_HEADER) != message.method:
            return RpcError(HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
        name_key = _NAME_PARAM.get(message.method)
        if name_key is not None and message.params.get(name_key) is not None \
                and _decode_header(request.headers.get(NAME_HEADER)) != message.params[name_key]:
            return RpcError(HEADER_MISMATCH, f"Mcp-Name header does not match params.{name_key}")
        if version not in MODERN_VERSIONS:
            return RpcError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                            {"supported": list(SUPPORTED_VERSIONS), "requested": version})
        return None

    async def _modern(self, request: Request, message: Message) -> Response:
        if message.kind == "notification":
            return Response(status_code=202)  # 2026-07-28 defines none from clients: acknowledged, dropped
        error = self._envelope_error(request, message)
        assert message.id is not None
        if error is None and message.method in _CALLS:
            return await self._call(request, message, None, modern=True)
        result: dict[str, Any] | None = None
        if error is None:
            try:
                result = await self._bounded(self._dispatch(message.method, message.params, modern=True))
            except RpcError as raised:
                error = raised
        return _json_reply(*self._answer(message, result, error, modern=True))

    @staticmethod
    def _answer(message: Message, result: dict[str, Any] | None, error: RpcError | None,
                *, modern: bool) -> tuple[bytes, int]:
        """A request's JSON-RPC response body and its HTTP status, in its era's shape."""
        assert message.id is not None
        if error is not None:
            status = _MODERN_STATUS.get(error.code, 200) if modern else 200
            return encode_error(message.id, error.code, error.message, error.data), status
        assert result is not None
        if modern:
            result["resultType"] = "complete"
            ttl_ms = _CACHEABLE_TTL_MS.get(message.method)
            if ttl_ms is not None:
                result["ttlMs"] = ttl_ms
                result["cacheScope"] = "private"
        return encode_result(message.id, result), 200

    # -- tools/call: progress and cancellation ------------------------------------------

    async def _call(self, request: Request, message: Message, session_id: str | None, *, modern: bool) -> Response:
        """Run a tool call in a task of its own, registered for ``notifications/cancelled``; stream its
        progress when asked to, and drop it (no response) once it was cancelled or its client left."""
        token = _progress_token(message.params)
        call = ToolCall(message.id, token if token is not None and _accepts_sse(request.headers.get("accept"))
                        else None)
        entered = call.enter()
        try:  # the task copies the context: the handler sees its call
            task = asyncio.ensure_future(self._bounded(self._dispatch(message.method, message.params, modern=modern)))
        finally:
            call.leave(entered)
        key = self.inflight.add(session_id, call, task)
        if call.wants_progress:
            def answered() -> bytes | None:  # the response, once the task is done (None: it was cancelled)
                self.inflight.remove(key, call)
                return None if task.cancelled() else self._outcome(message, task, modern)[0]

            return StreamingResponse(call.events(task, answered), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        watch = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            self.inflight.remove(key, call)
        if not task.done():  # the client left: nobody reads an answer
            task.cancel()
            return Response(status_code=202)
        if task.cancelled():  # notifications/cancelled: no response, as the specification says
            return Response(status_code=202)
        return _json_reply(*self._outcome(message, task, modern))

    def _outcome(self, message: Message, task: asyncio.Task[dict[str, Any]], modern: bool) -> tuple[bytes, int]:
        try:
            return self._answer(message, task.result(), None, modern=modern)
        except RpcError as error:
            return self._answer(message, None, error, modern=modern)

    # -- the methods ------------------------------------------------------------------

    async def _bounded(self, call: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.request_timeout_s):
                result: dict[str, Any] = await call
                return result
        except TimeoutError:
            raise RpcError(REQUEST_TIMEOUT, f"Request timed out after {self.request_timeout_s:.1f} s") from None
        except RpcError:
            raise
        except Exception as exc:
            logger.exception("MCP request failed")
            raise RpcError(INTERNAL_ERROR, f"Internal error: {type(exc).__name__}") from exc

    async def _dispatch(self, method: str, params: dict[str, Any], *, modern: bool) -> dict[str, Any]:
        if method in ("tools/call", "call_tool"):
            return await call_tool(self.tools, self.backends, params)
        if method in ("tools/list", "list_tools"):
            return {"tools": list(self._tool_list)}
        if method == "resources/read":
            return await read_resource(self.backends, params)
        if method == "resources/list":
            return list_resources(self.backends, params)
        if method == "resources/templates/list":
            return {"resourceTemplates": list(TEMPLATES)}
        if method == "ping" and not modern:
            return {}
        if method == "server/discover" and modern:
            return {"supportedVersions": list(SUPPORTED_VERSIONS), "capabilities": self.capabilities,
                    "instructions": _INSTRUCTIONS, "_meta": {SERVER_INFO_META: self.server_info}}
        if method == "initialize":
            raise RpcError(INVALID_REQUEST, "initialize is not part of revision 2026-07-28; send server/discover")
        shown = method if len(method) <= 100 else method[:100] + "..."
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {shown!r}", {"method": shown})
