"""The ``console`` suite: the supervision event stream and the browser console, against their targets.

- ``/events/stream delivery to 100 console clients p99``: 100 clients on
  ``/events/stream`` of a Runtime journaled to PostgreSQL (the node's path:
  event -> spool -> PostgreSQL -> NOTIFY -> one shared follow -> every
  stream). Agents are spawned one at a time; each client records the delay
  from the ``started`` event's ``occurred_at`` to its arrival. The baseline
  is a bare Starlette SSE endpoint on the same Hypercorn fanning out an
  in-memory tick (no journal): what the transport alone costs.
- ``console first render, 1,000 agents``: headless Chromium (Debian's
  ``chromium``, driven by Playwright) opens ``/ui`` on a Runtime hosting
  1,000 agents; the time from navigation to the tree showing "1,000 agents"
  and its first row. Worst of the runs; the median is in the notes. Skipped,
  and said so, when Chromium or Playwright is missing.

Clients run in a child process (``python -m mistersmith.bench.console sse ...``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from mistersmith.crossing import LoopThread
from mistersmith.journal import Journal, JournalConfig
from mistersmith.runtime import Runtime
from mistersmith.supervisors import SupervisorSpec
from mistersmith.timelines import JournalTimeline
from mistersmith.web import Backends, HttpServer, WebConfig, build_app

from ._options import Options
from ._pg import workspace
from ._report import Figure, Target, percentile
from .http import _raise_fd_limit, _serve_bare

__all__ = ["FULL", "QUICK", "Sizes", "run"]

_CHILD_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Sizes:
    clients: int
    events: int
    gap_s: float
    agents: int
    renders: int


FULL = Sizes(clients=100, events=40, gap_s=0.1, agents=1000, renders=5)
QUICK = Sizes(clients=10, events=5, gap_s=0.05, agents=100, renders=1)


def _sse_child(port: int, path: str, clients: int, events: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mistersmith.bench.console", "sse", str(port), path,
                             str(clients), str(events)], stdout=subprocess.PIPE, text=True)


def _delays(child: subprocess.Popen[str], publish: Callable[[int], object], sizes: Sizes) -> list[float]:
    assert child.stdout is not None
    ready = child.stdout.readline().strip()
    if ready != "ready":
        child.kill()
        raise RuntimeError(f"the SSE child did not get ready: {ready!r}")
    for i in range(sizes.events):
        publish(i)
        time.sleep(sizes.gap_s)  # pace the publisher: one event at a time, not a burst
    out, _ = child.communicate(timeout=_CHILD_TIMEOUT_S)
    delays: list[float] = json.loads(out)
    return delays


# -- the bare baseline: an in-memory tick fanned out over SSE ----------------------------------


class _Ticks:
    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()

    async def stream(self, request: Request) -> StreamingResponse:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    yield await queue.get()
            finally:
                self.queues.discard(queue)

        return StreamingResponse(body(), media_type="text/event-stream")

    def tick(self, i: int) -> None:
        stamp = datetime.now().astimezone().isoformat()
        event = b"id: %d\nevent: supervision\ndata: %s\n\n" % (i, orjson.dumps({"seq": i, "occurred_at": stamp}))
        for queue in self.queues:
            queue.put_nowait(event)


async def _serve_ticks(ticks: _Ticks) -> tuple[int, Callable[[], Coroutine[Any, Any, None]]]:
    app = Starlette(routes=[Route("/events/stream", ticks.stream)])
    return await _serve_bare(app)


# -- the figures --------------------------------------------------------------------------------


def bench_delivery(options: Options, sizes: Sizes) -> Figure:
    loop = LoopThread("mistersmith-bench-console")
    try:
        with workspace() as (home, dbs):
            journal = Journal.open(home / "node", JournalConfig(database_url=dbs.fresh()), loop=loop)
            rt = Runtime(sinks=[journal.sink], root=SupervisorSpec("root", intensity=100_000))
            try:
                config = WebConfig(port=0, rate_per_s=None, max_streams=sizes.clients + 10,
                                   max_connections_per_client=sizes.clients + 20)
                server = HttpServer(build_app(Backends(rt, timeline=JournalTimeline(journal)), config))
                loop.run(server.start(), 10.0)
                assert server.port is not None
                try:
                    options.progress(f"/events/stream: {sizes.events} events to {sizes.clients} clients (journaled)")
                    ours = _delays(_sse_child(server.port, "/events/stream", sizes.clients, sizes.events),
                                   lambda i: rt.spawn("echo", f"bench-{i}"), sizes)
                finally:
                    loop.run(server.stop(), 30.0)
            finally:
                rt.close()
                journal.close()
        ticks = _Ticks()
        port, stop = loop.run(_serve_ticks(ticks), 10.0)
        try:
            options.progress(f"bare Starlette SSE: {sizes.events} ticks to {sizes.clients} clients")
            theirs = _delays(_sse_child(port, "/events/stream", sizes.clients, sizes.events),
                             lambda i: loop.loop.call_soon_threadsafe(ticks.tick, i), sizes)
        finally:
            loop.run(stop(), 30.0)
    finally:
        loop.stop()
    return Figure(
        key="events_stream_p99",
        name=f"/events/stream delivery to {sizes.clients} console clients: p99",
        unit="ms", ours=percentile(ours, 99), baseline=percentile(theirs, 99),
        target=Target("<=", 100.0, relative=False),
        extra={"p50_ms": round(percentile(ours, 50), 3), "max_ms": round(max(ours), 3),
               "baseline_p50_ms": round(percentile(theirs, 50), 3), "delivered": len(ours),
               "expected": sizes.clients * sizes.events, "mean_ms": round(statistics.fmean(ours), 3)},
        shown=("p50_ms", "delivered"),
    )


def bench_first_render(options: Options, sizes: Sizes) -> Figure | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        options.progress("console first render: SKIPPED (no chromium or no playwright: apt-get install chromium)")
        return None
    loop = LoopThread("mistersmith-bench-console")
    rt = Runtime()
    runs: list[float] = []
    try:
        for i in range(sizes.agents):
            rt.spawn("echo", f"agent-{i:04d}")
        server = HttpServer(build_app(Backends(rt), WebConfig(port=0, rate_per_s=None)))
        loop.run(server.start(), 10.0)
        try:
            options.progress(f"console first render: {sizes.renders} loads of /ui with {sizes.agents:,} agents")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
                try:
                    for _ in range(sizes.renders):
                        context = browser.new_context(viewport={"width": 1280, "height": 800})
                        page = context.new_page()
                        started = time.perf_counter()
                        page.goto(f"{server.url}/ui")
                        expect(page.get_by_text(f"{sizes.agents:,} agents")).to_be_visible(timeout=30_000)
                        expect(page.get_by_role("link", name="agent-0000", exact=True)).to_be_visible(timeout=30_000)
                        runs.append(time.perf_counter() - started)
                        context.close()
                finally:
                    browser.close()
        finally:
            loop.run(server.stop(), 30.0)
    finally:
        rt.close()
        loop.stop()
    return Figure(
        key="console_first_render", name=f"console first render, {sizes.agents:,} agents (headless Chromium): worst",
        unit="s", ours=max(runs), baseline=None, target=Target("<=", 2.0, relative=False),
        extra={"median_s": round(statistics.median(runs), 3), "runs": len(runs)}, shown=("median_s", "runs"),
    )


def run(options: Options) -> list[Figure]:
    sizes = QUICK if options.quick else FULL
    _raise_fd_limit()
    logging.getLogger("mistersmith").setLevel(logging.ERROR)
    figures = [bench_delivery(options, sizes)]
    render = bench_first_render(options, sizes)
    if render is not None:
        figures.append(render)
    return figures


# -- the client side (a child process) ----------------------------------------------------------


async def _client(port: int, path: str, events: int, opened: asyncio.Event, counter: list[int], total: int,
                  delays_ms: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the stream was refused: {head[:60]!r}")
    await reader.readuntil(b": connected")
    counter[0] += 1
    if counter[0] == total:
        opened.set()
    got = 0
    while got < events:
        line = await reader.readline()
        at = line.find(b"data: ")
        if at >= 0:
            arrived = time.time()
            sent = datetime.fromisoformat(orjson.loads(line[at + 6:])["occurred_at"]).timestamp()
            delays_ms.append((arrived - sent) * 1000)
            got += 1
    writer.close()


async def _sse_main(port: int, path: str, clients: int, events: int) -> list[float]:
    opened = asyncio.Event()
    counter = [0]
    delays: list[float] = []
    tasks = [asyncio.create_task(_client(port, path, events, opened, counter, clients, delays))
             for _ in range(clients)]
    await opened.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    return delays


if __name__ == "__main__":
    if sys.argv[1] != "sse":
        raise SystemExit(f"unknown child command {sys.argv[1]!r}")
    _raise_fd_limit()
    _port, _path, _clients, _events = sys.argv[2:]
    print(json.dumps(asyncio.run(_sse_main(int(_port), _path, int(_clients), int(_events)))))
