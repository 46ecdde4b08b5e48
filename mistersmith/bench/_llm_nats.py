"""The ``llm`` suite's NATS figures: streamed progress and cancel, against bare nats-py, side by side.

The topology of the ``nats`` suite: an embedded ``nats-server``; a serving
process (``python -m mistersmith.bench._llm_nats serve URL``) that hosts, on
one event-loop thread, bare nats-py responders (the baselines) and a
MisterSmith node (Runtime + Bridge) with one ``bench-llm`` agent; and the
calling process as a plain nats-py client. Rounds alternate which side goes
first. The serving process is not pinned: these targets are absolute.

- ``progress items/s``: a request to ``agents.<id>.commands.tokens`` with
  ``MS-Stream: 1``; the handler calls ``self.progress`` N times; the client
  counts the ``MS-Kind: progress`` messages on its inbox until the
  ``MS-Kind: result``. Rate: progress messages received / time from the
  request's publish to the result's arrival. Baseline: a bare nats-py
  subscription that, on the same request, publishes N progress messages (the
  same headers, bodies ``encode_progress(...)``) and a result on the inbox.
  A stream keeps at most ``STREAM_MAXSIZE`` unread items and drops the oldest
  (progress is advisory): ``delivered`` says how many of N arrived.
- ``cancel over NATS p50``: a streaming request to ``forever`` (with an
  ``MS-Correlation-Id``) whose handler reports one progress item and then
  awaits forever; once that item arrives, the client sends a request on
  ``agents.<id>.control.cancel`` and times until the original request's error
  reply (``cancelled``) arrives on its inbox. Baseline: a bare nats-py task
  that awaits forever, cancelled by a request on another subject, whose
  ``CancelledError`` publishes the error reply.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mistersmith.headers import CORRELATION, KIND, KIND_PROGRESS, KIND_RESULT, STREAM, encode_progress

from ._harness import alternate, serving_process
from ._report import Figure, Target, percentile

__all__ = ["NatsSizes", "bench_nats", "serve"]

AGENT = "bench-llm-1"
RAW_TOKENS = "bench.raw.tokens"
RAW_FOREVER = "bench.raw.forever"
RAW_CANCEL = "bench.raw.cancel"
TIMEOUT_S = 30.0
CANCELLED = b'{"ok":false,"error":{"code":"cancelled","message":"cancelled"}}'


@dataclass(frozen=True, slots=True)
class NatsSizes:
    progress_rounds: int
    items_per_round: int
    cancels: int


# -- the serving process -----------------------------------------------------------------


async def _raw_responders(raw: Any) -> None:
    """The baselines, on a bare nats-py connection: a progress publisher and a cancellable task."""
    waiting: dict[str, asyncio.Task[None]] = {}
    progress_headers = {KIND: KIND_PROGRESS}

    async def tokens(msg: Any) -> None:
        n = int(orjson.loads(msg.data)["n"])
        for i in range(n):
            await raw.publish(msg.reply, encode_progress(i, i + 1, n), headers=progress_headers)
        await raw.publish(msg.reply, orjson.dumps({"ok": True, "result": n}), headers={KIND: KIND_RESULT})

    async def forever(msg: Any) -> None:
        cid = orjson.loads(msg.data)["correlation_id"]

        async def wait() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await raw.publish(msg.reply, CANCELLED, headers={KIND: KIND_RESULT})
                raise

        waiting[cid] = asyncio.get_running_loop().create_task(wait())
        await raw.publish(msg.reply, encode_progress("entered", None, None), headers=progress_headers)

    async def cancel(msg: Any) -> None:
        task = waiting.pop(orjson.loads(msg.data)["correlation_id"], None)
        if task is not None:
            task.cancel()
        await raw.publish(msg.reply, orjson.dumps({"ok": True, "result": {"cancelled": task is not None}}))

    await raw.subscribe(RAW_TOKENS, cb=tokens)
    await raw.subscribe(RAW_FOREVER, cb=forever)
    await raw.subscribe(RAW_CANCEL, cb=cancel)


def serve(url: str) -> None:
    """Host the bare responders and a MisterSmith node with one ``bench-llm`` agent until stdin closes."""
    from mistersmith import Runtime
    from mistersmith.bridge import Bridge, ConnectOptions, connect
    from mistersmith.crossing import LoopThread

    from ._harness import quiet_logs
    from ._llm_kind import KIND, BenchLlm

    with quiet_logs():
        rt = Runtime(node_id="bench-llm-node")
        rt.register(KIND, BenchLlm)
        loop = LoopThread()

        async def start() -> tuple[Any, Any, Bridge]:
            raw, _ = await connect(ConnectOptions(servers=(url,), name="bench-raw"))
            await _raw_responders(raw)
            nc, stats = await connect(ConnectOptions(servers=(url,), name="bench-node"))
            bridge = Bridge(rt, nc, connection_stats=stats)
            await bridge.start()
            await bridge.aspawn(KIND, AGENT)
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


class _Inbox:
    """One inbox subscription; each message goes to ``on_message`` (set per measurement)."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.subject: str = nc.new_inbox()
        self.on_message: Callable[[Any], None] = lambda msg: None

    async def start(self) -> None:
        async def cb(msg: Any) -> None:
            self.on_message(msg)

        await self.nc.subscribe(self.subject, cb=cb, pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
        await self.nc.flush()


async def _progress_rate(nc: Any, inbox: _Inbox, subject: str, n: int, headers: dict[str, str] | None) -> tuple[float, int]:
    """(progress messages per second, how many arrived) for one request of ``n`` items."""
    done = asyncio.get_running_loop().create_future()
    count = [0]

    def on_message(msg: Any) -> None:
        if msg.headers and msg.headers.get(KIND) == KIND_PROGRESS:
            count[0] += 1
        elif not done.done():
            done.set_result(time.perf_counter())

    inbox.on_message = on_message
    t0 = time.perf_counter()
    await nc.publish(subject, orjson.dumps({"n": n}), reply=inbox.subject, headers=headers)
    t1 = await asyncio.wait_for(done, TIMEOUT_S)
    return count[0] / (t1 - t0), count[0]


async def _cancel_once(nc: Any, inbox: _Inbox, ours: bool, cid: str) -> float:
    """Milliseconds from sending the cancel until the cancelled request's error reply arrived."""
    loop = asyncio.get_running_loop()
    entered = loop.create_future()
    ended = loop.create_future()

    def on_message(msg: Any) -> None:
        target = entered if msg.headers and msg.headers.get(KIND) == KIND_PROGRESS else ended
        if not target.done():
            target.set_result((time.perf_counter(), msg.data))

    inbox.on_message = on_message
    if ours:
        await nc.publish(f"agents.{AGENT}.commands.forever", b'{"report":true}', reply=inbox.subject,
                         headers={STREAM: "1", CORRELATION: cid})
        cancel_subject = f"agents.{AGENT}.control.cancel"
    else:
        await nc.publish(RAW_FOREVER, orjson.dumps({"correlation_id": cid}), reply=inbox.subject)
        cancel_subject = RAW_CANCEL
    await asyncio.wait_for(entered, TIMEOUT_S)
    t0 = time.perf_counter()
    answer = loop.create_task(nc.request(cancel_subject, orjson.dumps({"correlation_id": cid}), timeout=TIMEOUT_S))
    t1, body = await asyncio.wait_for(ended, TIMEOUT_S)
    reply = await answer
    error = orjson.loads(body).get("error") or {}
    if error.get("code") != "cancelled" or orjson.loads(reply.data)["result"]["cancelled"] is not True:
        raise RuntimeError(f"cancel {cid}: got {body!r} and {reply.data!r}")
    return float(t1 - t0) * 1_000


async def _measure(url: str, sizes: NatsSizes, progress: Callable[[str], None]) -> list[Figure]:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    inbox = _Inbox(nc)
    await inbox.start()
    ours_subject = f"agents.{AGENT}.commands.tokens"
    stream = {STREAM: "1"}
    n = sizes.items_per_round
    try:
        await _progress_rate(nc, inbox, ours_subject, min(n, 1_000), stream)
        await _progress_rate(nc, inbox, RAW_TOKENS, min(n, 1_000), None)
        ours: list[float] = []
        theirs: list[float] = []
        delivered: list[int] = []
        for i, ours_first in alternate(sizes.progress_rounds):
            progress(f"progress over NATS: round {i + 1}/{sizes.progress_rounds}, {n:,} items each side")
            if ours_first:
                rate, got = await _progress_rate(nc, inbox, ours_subject, n, stream)
                theirs.append((await _progress_rate(nc, inbox, RAW_TOKENS, n, None))[0])
            else:
                theirs.append((await _progress_rate(nc, inbox, RAW_TOKENS, n, None))[0])
                rate, got = await _progress_rate(nc, inbox, ours_subject, n, stream)
            ours.append(rate)
            delivered.append(got)
        progress(f"cancel over NATS: {sizes.cancels} cancels each side")
        for w in range(3):
            await _cancel_once(nc, inbox, True, f"warm-{w}")
            await _cancel_once(nc, inbox, False, f"warm-{w}")
        ours_ms: list[float] = []
        theirs_ms: list[float] = []
        for i, ours_first in alternate(sizes.cancels):
            for side in ((True, False) if ours_first else (False, True)):
                (ours_ms if side else theirs_ms).append(await _cancel_once(nc, inbox, side, f"c{i}"))
    finally:
        await nc.close()
    return [
        Figure("progress_rate", "progress items/s from one agent to a NATS client", "items/s",
               statistics.median(ours), statistics.median(theirs), Target(">=", 20_000.0, relative=False),
               {"delivered": f"{min(delivered):,}-{max(delivered):,} of {n:,}", "items": n,
                "rounds": sizes.progress_rounds}, ("delivered",)),
        Figure("nats_cancel_p50", "cancel -> caller gets cancelled, over NATS, p50", "ms",
               percentile(ours_ms, 50), percentile(theirs_ms, 50), Target("<=", 5.0, relative=False),
               {"p99": percentile(ours_ms, 99), "baseline_p99": percentile(theirs_ms, 99), "cancels": len(ours_ms)},
               ("p99", "baseline_p99")),
    ]


def bench_nats(sizes: NatsSizes, progress: Callable[[str], None]) -> list[Figure]:
    """Start nats-server and the serving process, measure, stop both."""
    from mistersmith.embedded.nats import EmbeddedNats

    with tempfile.TemporaryDirectory(prefix="ms-bench-llm-") as tmp, EmbeddedNats(tmp) as server:
        progress(f"nats-server at {server.url}")
        with serving_process("mistersmith.bench._llm_nats", [server.url], TIMEOUT_S):
            return asyncio.run(_measure(server.url, sizes, progress))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit("usage: python -m mistersmith.bench._llm_nats serve NATS_URL")
