"""Helpers for the web shim's tests: the served node, raw HTTP, JSON-RPC and SSE clients."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from mistersmith import Runtime
from mistersmith.crossing import LoopThread
from mistersmith.discoveries import DiscoveryHub
from mistersmith.web import HttpServer, WebApp

T = TypeVar("T")

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Served:
    """One running server and what it serves."""

    loop: LoopThread
    runtime: Runtime
    hub: DiscoveryHub | None
    app: WebApp
    server: HttpServer
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the server's loop (the node's loop) and wait for it."""
        return self.loop.run(coro, timeout_s)

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


# -- raw HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
                  headers: dict[str, str] | None = None) -> Reply:
    """One HTTP/1.1 request over a fresh connection (no client library in the way)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        headers = {"host": f"{host}:{port}", **(headers or {})}  # a given host replaces the real one
        lines = [f"{method} {path} HTTP/1.1", "connection: close"]
        for k, v in headers.items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30.0)
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    if parsed.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return Reply(int(status_line.split()[1]), parsed, rest)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def http(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    return asyncio.run(request(url, method, path, body, headers))


JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def rpc(served: Served, method: str, params: dict[str, Any] | None = None, *, id_: Any = 1,
        headers: dict[str, str] | None = None) -> Reply:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        message["params"] = params
    return http(served.url, "POST", "/mcp", orjson.dumps(message), {**JSON_HEADERS, **served.auth(), **(headers or {})})


def call(served: Served, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """``tools/call`` over raw JSON-RPC; returns the result object."""
    reply = rpc(served, "tools/call", {"name": tool, "arguments": arguments or {}})
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.json()["result"]
    return result


# -- SSE ------------------------------------------------------------------------------------


class SseClient:
    """A minimal SSE reader over a raw connection, for many concurrent streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int,
                 headers: dict[str, str]) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self.comments: list[str] = []

    @classmethod
    async def open(cls, url: str, query: str = "", headers: dict[str, str] | None = None,
                   path: str = "/discoveries/stream") -> SseClient:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"GET {path}{query} HTTP/1.1", "accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in {"host": f"{host}:{port}", **(headers or {})}.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
        status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
        parsed = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        client = cls(reader, writer, int(status_line.split()[1]), parsed)
        if client.status == 200:
            assert parsed.get("transfer-encoding") == "chunked"
        return client

    async def _line(self) -> str:
        # Hypercorn frames the stream in chunks, one per send: "<hex>\r\n<data>\r\n".
        while True:
            if getattr(self, "_buffer", ""):
                line, sep, rest = self._buffer.partition("\n")
                if sep:
                    self._buffer = rest
                    return line
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.strip().split(b";")[0], 16)
            if size == 0:
                raise EOFError("the server ended the stream")
            data = await self.reader.readexactly(size + 2)
            self._buffer = getattr(self, "_buffer", "") + data[:-2].decode()

    async def event(self, timeout_s: float = 10.0) -> dict[str, str]:
        """The next event (comments are collected in ``comments``)."""
        async def read() -> dict[str, str]:
            fields: dict[str, str] = {}
            while True:
                line = await self._line()
                if line == "":
                    if "data" in fields:
                        return fields
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
        return await asyncio.wait_for(read(), timeout_s)

    async def comment(self, timeout_s: float = 10.0) -> str:
        """Wait for the next comment line (``connected``, ``keepalive``)."""
        seen = len(self.comments)

        async def read() -> str:
            while len(self.comments) <= seen:
                line = await self._line()
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
            return self.comments[seen]
        return await asyncio.wait_for(read(), timeout_s)

    async def body(self) -> bytes:
        """The body of a refusal (not a stream)."""
        return await asyncio.wait_for(self.reader.readexactly(int(self.headers["content-length"])), 10.0)

    def close(self) -> None:
        self.writer.close()


