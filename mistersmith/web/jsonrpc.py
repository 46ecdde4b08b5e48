"""JSON-RPC 2.0 framing: decode one message, encode a result or an error. Pure.

MCP (2025-06-18 on) removed batching, so a JSON array is an invalid request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_TIMEOUT",
    "RESOURCE_NOT_FOUND",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "Message",
    "RpcError",
    "encode_error",
    "encode_result",
    "parse",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001
RESOURCE_NOT_FOUND = -32002
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

RequestId = str | int


class RpcError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``id`` is ``None`` for notifications (and for responses we ignore)."""

    kind: Literal["request", "notification", "response"]
    id: RequestId | None
    method: str
    params: dict[str, Any]


def _valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse(body: bytes) -> Message:
    """Decode a POST body into one message, or raise ``RpcError`` (-32700 or -32600)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RpcError(PARSE_ERROR, "Parse error: the body is not valid JSON") from None
    if isinstance(raw, list):
        raise RpcError(INVALID_REQUEST, "Invalid Request: batches (JSON arrays) are not supported; send one message")
    if not isinstance(raw, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: a message is a JSON object")
    if raw.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    if "method" not in raw:
        if "id" in raw and ("result" in raw or "error" in raw) and _valid_id(raw["id"]):
            return Message("response", None, "", {})
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "method" is missing')
    method = raw["method"]
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "method" must be a non-empty string')
    params = raw.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "params" must be an object')
    if "id" not in raw:
        return Message("notification", None, method, params)
    if not _valid_id(raw["id"]):
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer')
    return Message("request", raw["id"], method, params)


def encode_result(request_id: RequestId, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})
