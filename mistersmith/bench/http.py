"""The ``http`` suite: the web shim against a bare Starlette endpoint, side by side.

- ``tools/call send_command p99``: 50 concurrent clients, each on its own
  keep-alive connection, POST ``tools/call send_command`` to an ``echo``
  agent on ``/mcp``; the baseline is a bare Starlette endpoint on the same
  Hypercorn (same loop, same config) that parses the JSON-RPC body and
  answers JSON. Rounds alternate ours/theirs; p50 is in the notes.
- ``SSE fan-out p99``: 1,000 clients on ``/discoveries/stream``; discoveries
  are shared one at a time, each stamped with ``time.monotonic_ns()`` (one
  clock for every process on the machine), and each client records the
  delay to its arrival.

The load runs in a child process (``python -m mistersmith.bench.http
load|sse ...``) so that clients and server do not share a GIL; the server
runs in this process, on a node-style loop thread.

Run it with ``python -m mistersmith.bench http``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any
from dataclasses import dataclass

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mistersmith.crossing import LoopThread
from mistersmith.discoveries import DiscoveryHub
from mistersmith.discovery import Discovery
from mistersmith.runtime import Runtime
from mistersmith.web import Backends, HttpServer, WebConfig, build_app

from ._options import Options
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]

_CHILD_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Sizes:
    clients: int
    requests_per_client: int
    rounds: int
    warmup_per_client: int
    sse_clients: int
    sse_events: int
    sse_gap_s: float


FULL = Sizes(clients=50, requests_per_client=60, rounds=4, warmup_per_client=5, sse_clients=1000, sse_events=40,
             sse_gap_s=0.25)
QUICK = Sizes(clients=10, requests_per_client=10, rounds=1, warmup_per_client=2, sse_clients=20, sse_events=3,
              sse_gap_s=0.05)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the server side (this process) --------------------------------------------------------


async def _bare_json(request: Request) -> Response:
    message = orjson.loads(await request.body())
    return Response(orjson.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": {"ok": True}}),
                    media_type="application/json")


async def _serve_bare(app: Starlette | None = None) -> tuple[int, Callable[[], Coroutine[Any, Any, None]]]:
    """The baseline: a bare Starlette JSON endpoint (or ``app``) on a Hypercorn configured as ``HttpServer`` does."""
    app = app if app is not None else Starlette(routes=[Route("/json", _bare_json, methods=["POST"])])
    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    port = int(sock.getsockname()[1])
    hc = Config()
    hc.bind = [f"fd://{sock.detach()}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("mistersmith.bench.hypercorn")
    hc.keep_alive_timeout = 75.0
    hc.backlog = 2048
    done = asyncio.Event()
    task = asyncio.create_task(serve(app, hc, shutdown_trigger=done.wait))  # type: ignore[arg-type]

    async def stop() -> None:
        done.set()
        await task

    return port, stop


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mistersmith.bench.http", *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)


def _load(port: int, path: str, body: bytes, sizes: Sizes) -> list[float]:
    child = _child("load", str(port), path, body.decode(), str(sizes.clients), str(sizes.requests_per_client),
                   str(sizes.warmup_per_client))
    out, _ = child.communicate(timeout=_CHILD_TIMEOUT_S)
    if child.returncode != 0:
        raise RuntimeError(f"the load child failed with {child.returncode}")
    samples: list[float] = json.loads(out)
    return samples


def bench_mcp(loop: LoopThread, port: int, bare_port: int, sizes: Sizes) -> Figure:
    call = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "send_command", "arguments": {"agent_id": "bench-echo", "command": "echo", "payload": {"n": 1}}}})
    bare = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"n": 1}})
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(sizes.rounds):
        if r % 2 == 0:
            ours += _load(port, "/mcp", call, sizes)
            theirs += _load(bare_port, "/json", bare, sizes)
        else:
            theirs += _load(bare_port, "/json", bare, sizes)
            ours += _load(port, "/mcp", call, sizes)
    return Figure(
        key="mcp_send_command_p99",
        name=f"tools/call send_command, {sizes.clients} clients: p99",
        unit="ms",
        ours=percentile(ours, 99) * 1000,
        baseline=percentile(theirs, 99) * 1000,
        target=Target("<=", 3.0, relative=True),
        extra={"p50_ms": round(percentile(ours, 50) * 1000, 3),
               "baseline_p50_ms": round(percentile(theirs, 50) * 1000, 3),
               "samples": len(ours), "baseline_samples": len(theirs), "rounds": sizes.rounds},
        shown=("p50_ms", "baseline_p50_ms"),
    )


def bench_sse(loop: LoopThread, hub: DiscoveryHub, port: int, sizes: Sizes) -> Figure:
    child = _child("sse", str(port), str(sizes.sse_clients), str(sizes.sse_events))
    assert child.stdout is not None
    ready = child.stdout.readline().strip()
    if ready != "ready":
        child.kill()
        raise RuntimeError(f"the SSE child did not get ready: {ready!r}")
    for i in range(sizes.sse_events):
        stamp = time.monotonic_ns()
        loop.run(hub.share(Discovery("bench", "bench", "insight", f"{stamp}", 0.5)), 30.0)
        time.sleep(sizes.sse_gap_s)  # pace the publisher: one discovery at a time, not a burst
        del i
    out, _ = child.communicate(timeout=_CHILD_TIMEOUT_S)
    delays_ms: list[float] = json.loads(out)
    expected = sizes.sse_clients * sizes.sse_events
    return Figure(
        key="sse_fanout_p99",
        name=f"SSE fan-out to {sizes.sse_clients:,} clients: delivery p99",
        unit="ms",
        ours=percentile(delays_ms, 99),
        baseline=None,
        target=Target("<=", 100.0, relative=False),
        extra={"p50_ms": round(percentile(delays_ms, 50), 3), "max_ms": round(max(delays_ms), 3),
               "delivered": len(delays_ms), "expected": expected, "mean_ms": round(statistics.fmean(delays_ms), 3)},
        shown=("p50_ms", "delivered"),
    )


def run(options: Options) -> list[Figure]:
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    _raise_fd_limit()
    logging.getLogger("mistersmith").setLevel(logging.ERROR)
    loop = LoopThread("mistersmith-bench-http")
    rt = Runtime()
    try:
        rt.spawn("echo", "bench-echo", mailbox_size=100_000)
        hub = DiscoveryHub(buffer_per_subscriber=4096)
        # one client address opens every connection here: no rate limit, no per-client connection cap
        config = WebConfig(port=0, rate_per_s=None, max_streams=sizes.sse_clients + 100,
                           max_connections_per_client=sizes.sse_clients + sizes.clients + 100)
        server = HttpServer(build_app(Backends(rt, discoveries=hub), config))
        loop.run(server.start(), 10.0)
        bare_port, stop_bare = loop.run(_serve_bare(), 10.0)
        assert server.port is not None
        try:
            progress(f"tools/call send_command vs bare Starlette: {sizes.rounds} rounds x {sizes.clients} clients "
                     f"x {sizes.requests_per_client} requests each side")
            figures = [bench_mcp(loop, server.port, bare_port, sizes)]
            progress(f"SSE fan-out: {sizes.sse_events} discoveries to {sizes.sse_clients:,} streams")
            figures.append(bench_sse(loop, hub, server.port, sizes))
        finally:
            loop.run(server.stop(), 30.0)
            loop.run(stop_bare(), 30.0)
    finally:
        rt.close()
        loop.stop()
    return figures


# -- the client side (a child process) ------------------------------------------------------


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected reply: {head[:40]!r} {body[:200]!r}")
    return body


async def _load_client(port: int, path: str, body: bytes, n: int, warmup: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    samples: list[float] = []
    for i in range(n + warmup):
        started = time.perf_counter()
        writer.write(request)
        reply = await _read_reply(reader)
        elapsed = time.perf_counter() - started
        if b'"error"' in reply or b'"isError":true' in reply:
            raise RuntimeError(f"the call failed: {reply[:200]!r}")
        if i >= warmup:
            samples.append(elapsed)
    writer.close()
    return samples


async def _load_main(port: int, path: str, body: bytes, clients: int, n: int, warmup: int) -> list[float]:
    results = await asyncio.gather(*(_load_client(port, path, body, n, warmup) for _ in range(clients)))
    return [s for r in results for s in r]


async def _sse_client(port: int, events: int, opened: asyncio.Event, counter: list[int], total: int,
                      delays_ms: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /discoveries/stream HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b": connected\n")
    counter[0] += 1
    if counter[0] == total:
        opened.set()
    got = 0
    while got < events:
        line = await reader.readline()
        if line.startswith(b"data: "):
            arrived = time.monotonic_ns()
            stamp = int(orjson.loads(line[6:])["content"])
            delays_ms.append((arrived - stamp) / 1e6)
            got += 1
    writer.close()


async def _sse_main(port: int, clients: int, events: int) -> list[float]:
    opened = asyncio.Event()
    counter = [0]
    delays: list[float] = []
    tasks = [asyncio.create_task(_sse_client(port, events, opened, counter, clients, delays)) for _ in range(clients)]
    await opened.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    return delays


def _child_main(argv: list[str]) -> None:
    _raise_fd_limit()
    if argv[0] == "load":
        port, path, body, clients, n, warmup = argv[1:]
        result = asyncio.run(_load_main(int(port), path, body.encode(), int(clients), int(n), int(warmup)))
    elif argv[0] == "sse":
        port, clients, events = argv[1:]
        result = asyncio.run(_sse_main(int(port), int(clients), int(events)))
    else:
        raise SystemExit(f"unknown child command {argv[0]!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
