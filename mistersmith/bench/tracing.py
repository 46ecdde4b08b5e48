"""The ``tracing`` suite: what turning tracing on costs a NATS request, side by side with it off.

One process: an embedded ``nats-server``, a Runtime and its Bridge on a loop
thread with one ``echo`` agent, and a nats-py client on this thread's loop
sending requests to ``agents.bench-echo.commands.echo``, each with a
``traceparent`` header as a traced caller would send. Rounds alternate the
order of the two sides; between them tracing is turned on (``mistersmith.
tracing.configure_exporter``: an in-memory exporter behind the batch span
processor, as a node exports) or off (``disable``). With it on, each request
makes its ``nats.receive``, ``agent.command`` and ``nats.reply`` spans.

- ``request p50, tracing on`` against ``tracing off``: target ≤ 1.15 ×.

Run it with ``python -m mistersmith.bench tracing``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ._harness import alternate, quiet_logs
from ._options import Options
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]

AGENT = "bench-echo"
SUBJECT = f"agents.{AGENT}.commands.echo"
TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Sizes:
    warmup: int
    rounds: int
    requests_per_round: int


FULL = Sizes(warmup=300, rounds=10, requests_per_round=1_000)
QUICK = Sizes(warmup=20, rounds=2, requests_per_round=100)


async def _requests(nc: Any, n: int) -> list[float]:
    from mistersmith.bridge import new_traceparent

    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        headers = {"traceparent": new_traceparent()}
        t0 = clock()
        await nc.request(SUBJECT, b'{"n":1}', timeout=TIMEOUT_S, headers=headers)
        out.append((clock() - t0) / 1_000)
    return out


def run(options: Options) -> list[Figure]:
    import nats
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mistersmith import Runtime, tracing
    from mistersmith.bridge import Bridge, ConnectOptions, connect
    from mistersmith.crossing import LoopThread
    from mistersmith.embedded.nats import EmbeddedNats

    sizes = QUICK if options.quick else FULL
    exporter = InMemorySpanExporter()
    was_on = tracing.enabled
    with quiet_logs(), tempfile.TemporaryDirectory(prefix="ms-bench-tracing-") as tmp, EmbeddedNats(tmp) as server:
        rt = Runtime(node_id="bench-tracing")
        loop = LoopThread()
        try:
            async def start() -> tuple[Any, Bridge]:
                nc, stats = await connect(ConnectOptions(servers=(server.url,), name="bench-node"))
                bridge = Bridge(rt, nc, connection_stats=stats)
                await bridge.start()
                await bridge.aspawn("echo", AGENT, mailbox_size=1_000_000)
                return nc, bridge

            node_nc, bridge = loop.run(start(), TIMEOUT_S)

            async def measure() -> tuple[list[float], list[float], int]:
                nc = await nats.connect(server.url)
                on_p50: list[float] = []
                off_p50: list[float] = []
                spans = 0
                try:
                    tracing.configure_exporter(exporter)
                    await _requests(nc, sizes.warmup)
                    tracing.disable()
                    await _requests(nc, sizes.warmup)
                    for i, on_first in alternate(sizes.rounds):
                        options.progress(f"request/reply round {i + 1}/{sizes.rounds}, tracing "
                                         f"{'on then off' if on_first else 'off then on'}")
                        for on in (on_first, not on_first):
                            if on:
                                tracing.configure_exporter(exporter)
                            else:
                                tracing.disable()
                            p50 = percentile(await _requests(nc, sizes.requests_per_round), 50)
                            (on_p50 if on else off_p50).append(p50)
                        tracing.disable()
                        tracing.shutdown()  # flush the batch processor: count what was exported
                        spans = len(exporter.get_finished_spans())
                finally:
                    await nc.close()
                return on_p50, off_p50, spans

            on_p50, off_p50, spans = asyncio.run(measure())

            async def stop() -> None:
                await bridge.close()
                await node_nc.close()

            loop.run(stop(), TIMEOUT_S)
        finally:
            tracing.disable()
            if was_on:
                tracing.configure_exporter(exporter)
            loop.stop()
            rt.close()
    return [Figure(
        key="tracing_request_p50",
        name="NATS request p50, tracing on (in-memory exporter) vs off",
        unit="us",
        ours=statistics.median(on_p50),
        baseline=statistics.median(off_p50),
        target=Target("<=", 1.15, relative=True),
        extra={"rounds": sizes.rounds, "requests_per_round": sizes.requests_per_round,
               "spans_exported": spans},
        shown=("spans_exported",),
    )]
