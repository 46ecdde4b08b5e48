"""The ``nats`` suite: the NATS bridge against raw nats-py, side by side.

Topology, the same for both sides: an embedded ``nats-server``; a *serving*
process (``python -m mistersmith.bench.nats serve URL``) that hosts, on one
event-loop thread, both a bare nats-py responder (the baseline) and a
MisterSmith node (Runtime + Bridge) with one ``echo`` agent; and this process
as the client, on its own event loop. Rounds alternate which side goes first,
and figures are medians over rounds.

- ``request p50``/``p99``: ``nc.request`` to ``agents.bench-echo.commands.echo``
  vs ``nc.request`` to a subscription that publishes the body back.
- ``tell throughput``: N publishes to ``agents.bench-echo.commands.echo``
  (each a tell the agent handles), then one request on the same subscription
  as a barrier, vs N publishes to a bare subscription that counts them, then
  one request to it as the barrier.
- ``task throughput`` (reported, no baseline): tasks submitted to
  ``tasks.echo.queue.normal`` (JetStream, each publish acked), served by the
  node's worker (``max_in_flight`` 64) with the echo agent, acked, until every
  ``tasks.{id}.result`` has arrived.

The serving process runs on one CPU unless ``--no-pin`` is given: its two
threads (the event loop and the agent's) then hand over without waking
another CPU, which on a VM costs tens of microseconds per hand-over (the raw
responder, with no hand-over, is barely affected). Both sides share that
process, so both are measured pinned or both not.

Run it with ``python -m mistersmith.bench nats``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ._options import Options
from ._harness import alternate, serving_process
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]

AGENT = "bench-echo"
RAW_ECHO = "bench.raw.echo"
RAW_SINK = "bench.raw.sink"
BODY = b'{"n":1}'
TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Sizes:
    warmup: int
    rounds: int
    requests_per_round: int
    tell_rounds: int
    tells_per_round: int
    task_rounds: int
    tasks_per_round: int


FULL = Sizes(warmup=300, rounds=10, requests_per_round=1_000, tell_rounds=6, tells_per_round=20_000,
             task_rounds=3, tasks_per_round=2_000)
QUICK = Sizes(warmup=20, rounds=2, requests_per_round=100, tell_rounds=2, tells_per_round=500,
              task_rounds=1, tasks_per_round=100)
TASKS_IN_FLIGHT = 64


# -- the serving process -----------------------------------------------------------------


def serve(url: str, pin: bool = False) -> None:
    """Host the raw responder and a MisterSmith node until stdin closes (on one CPU if ``pin``)."""
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # threads started from now on inherit it
    from mistersmith import Runtime
    from mistersmith.bridge import Bridge, ConnectOptions, TaskOptions, connect
    from mistersmith.crossing import LoopThread

    from ._harness import quiet_logs

    with quiet_logs():
        rt = Runtime(node_id="bench-node")
        loop = LoopThread()
        count = [0]

        async def start() -> tuple[Any, Any, Bridge]:
            raw, _ = await connect(ConnectOptions(servers=(url,), name="bench-raw"))

            async def echo(msg: Any) -> None:
                await raw.publish(msg.reply, msg.data)

            async def sink(msg: Any) -> None:
                count[0] += 1
                if msg.reply:
                    await raw.publish(msg.reply, str(count[0]).encode())

            await raw.subscribe(RAW_ECHO, cb=echo)
            await raw.subscribe(RAW_SINK, cb=sink, pending_msgs_limit=1_000_000)
            nc, stats = await connect(ConnectOptions(servers=(url,), name="bench-node"))
            bridge = Bridge(rt, nc, connection_stats=stats, task_options=TaskOptions(max_in_flight=TASKS_IN_FLIGHT))
            await bridge.start()
            await bridge.aspawn("echo", AGENT, mailbox_size=1_000_000)
            await bridge.tasks.serve("echo")
            await raw.flush()
            return raw, nc, bridge

        raw, nc, bridge = loop.run(start(), TIMEOUT_S)
        print("ready", flush=True)
        sys.stdin.read()

        async def stop() -> None:
            await bridge.close()
            await nc.close()
            await raw.close()

        loop.run(stop(), TIMEOUT_S)
        loop.stop()
        rt.close()


# -- the client side -----------------------------------------------------------------------


async def _requests(nc: Any, subject: str, n: int) -> list[float]:
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        await nc.request(subject, BODY, timeout=TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


async def _tells(nc: Any, subject: str, barrier: str, n: int) -> float:
    """Messages per second from the first publish until the barrier request returns."""
    t0 = time.perf_counter()
    for _ in range(n):
        await nc.publish(subject, BODY)
    await nc.request(barrier, b"", timeout=TIMEOUT_S * 6)
    return n / (time.perf_counter() - t0)


async def _tasks(nc: Any, n: int, round_no: int) -> float:
    """Tasks per second through the work queue, from the first submit to the last result."""
    js = nc.jetstream()
    results = asyncio.Queue[None]()

    async def on_result(msg: Any) -> None:
        results.put_nowait(None)

    sub = await nc.subscribe("tasks.*.result", cb=on_result)
    t0 = time.perf_counter()
    for chunk in range(0, n, 100):
        await asyncio.gather(*(
            js.publish("tasks.echo.queue.normal",
                       b'{"task_id":"t%d-%d","command":"echo","payload":{"n":1}}' % (round_no, i),
                       headers={"Nats-Msg-Id": f"t{round_no}-{i}-{t0}"})
            for i in range(chunk, min(n, chunk + 100))
        ))
    for _ in range(n):
        await asyncio.wait_for(results.get(), TIMEOUT_S * 6)
    rate = n / (time.perf_counter() - t0)
    await sub.unsubscribe()
    return rate


async def _measure(url: str, sizes: Sizes, options: Options) -> list[Figure]:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    ours_subject = f"agents.{AGENT}.commands.echo"
    try:
        await _requests(nc, ours_subject, sizes.warmup)
        await _requests(nc, RAW_ECHO, sizes.warmup)
        ours_p50: list[float] = []
        raw_p50: list[float] = []
        ours_all: list[float] = []
        raw_all: list[float] = []
        for i, ours_first in alternate(sizes.rounds):
            options.progress(f"request/reply round {i + 1}/{sizes.rounds}")
            n = sizes.requests_per_round
            first, second = (ours_subject, RAW_ECHO) if ours_first else (RAW_ECHO, ours_subject)
            a = await _requests(nc, first, n)
            b = await _requests(nc, second, n)
            mine, other = (a, b) if ours_first else (b, a)
            ours_p50.append(percentile(mine, 50))
            raw_p50.append(percentile(other, 50))
            ours_all += mine
            raw_all += other
        ours_tps: list[float] = []
        raw_tps: list[float] = []
        for i, ours_first in alternate(sizes.tell_rounds):
            options.progress(f"tell throughput round {i + 1}/{sizes.tell_rounds}")
            n = sizes.tells_per_round
            ours_run = _tells(nc, ours_subject, f"agents.{AGENT}.commands.ping", n)
            raw_run = _tells(nc, RAW_SINK, RAW_SINK, n)
            if ours_first:
                ours_tps.append(await ours_run)
                raw_tps.append(await raw_run)
            else:
                raw_tps.append(await raw_run)
                ours_tps.append(await ours_run)
        task_rates: list[float] = []
        for i in range(sizes.task_rounds):
            options.progress(f"task queue round {i + 1}/{sizes.task_rounds}")
            task_rates.append(await _tasks(nc, sizes.tasks_per_round, i))
    finally:
        await nc.close()
    p99_ours = percentile(ours_all, 99)
    p99_raw = percentile(raw_all, 99)
    samples = {"samples": len(ours_all), "rounds": sizes.rounds}
    return [
        Figure("request_p50", "request -> reply to an echo agent, p50", "us", statistics.median(ours_p50),
               statistics.median(raw_p50), Target("<=", 1.3, relative=True), samples),
        Figure("request_p99", "request -> reply to an echo agent, p99", "us", p99_ours, p99_raw,
               Target("<=", 1.5, relative=True), samples),
        Figure("tell_throughput", "fire-and-forget command throughput", "msg/s", statistics.median(ours_tps),
               statistics.median(raw_tps), Target(">=", 0.5, relative=True),
               {"messages": sizes.tells_per_round, "rounds": sizes.tell_rounds}),
        Figure("task_throughput", "task queue throughput with acks", "tasks/s", statistics.median(task_rates),
               None, Target(">=", 0.0, relative=False),
               {"tasks": sizes.tasks_per_round, "rounds": sizes.task_rounds, "in_flight": TASKS_IN_FLIGHT}),
    ]


def run(options: Options) -> list[Figure]:
    """The suite: start nats-server and the serving process, measure, stop both."""
    from mistersmith.embedded.nats import EmbeddedNats

    sizes = QUICK if options.quick else FULL
    with tempfile.TemporaryDirectory(prefix="ms-bench-nats-") as tmp, EmbeddedNats(tmp) as server:
        options.progress(f"nats-server at {server.url}")
        with serving_process("mistersmith.bench.nats", [server.url, *(["--pin"] if options.pin else [])],
                             TIMEOUT_S):
            return asyncio.run(_measure(server.url, sizes, options))


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "serve" and sys.argv[3:] in ([], ["--pin"]):
        serve(sys.argv[2], pin=sys.argv[3:] == ["--pin"])
    else:
        sys.exit("usage: python -m mistersmith.bench.nats serve NATS_URL [--pin]")
