"""The ``llm`` suite: async handlers, streamed progress and cancellation (issue 13), side by side.

Every figure is measured in the same run as its baseline, in interleaved
rounds (ours first, then the baseline first...); figures are medians over
rounds. The agent is ``bench-llm`` (``_llm_kind``): one kind with a sync and an
async handler, so the two are compared on the same agent.

In process:

- ``async ask p50``: ``Runtime.ask`` to the ``async def`` handler ``aecho`` vs
  the same agent's ``def`` handler ``echo``, a fresh agent per round (threads
  on one CPU unless ``--no-pin``, as for the ``runtime`` suite's ratios).
- ``cancel in process p50``: a thread waits in ``Runtime.ask`` on ``forever``
  (an async handler awaiting an event that never comes); once the handler
  runs, another thread calls ``Runtime.cancel``, and the time is taken until
  the waiting ``ask`` raises ``CommandCancelledError``. Baseline: plain asyncio,
  a thread waits on ``run_coroutine_threadsafe(...).result()`` of a task that
  awaits forever on a loop thread, and another thread cancels the task
  (``call_soon_threadsafe(task.cancel)``) until the waiter hears it.
- ``1,000 agents x 1 s``: 1,000 ``bench-llm`` agents, one ``aask`` each of ``nap``
  (``asyncio.sleep(1.0)``) from one asyncio caller, all at once; wall time from
  the first send to the last reply. Baseline: 1,000 asyncio tasks awaiting
  ``asyncio.sleep(1.0)`` in plain asyncio. A first round with ``seconds=0``
  (not timed) has each agent make its loop.

Over NATS (``_llm_nats``: a serving process, as in the ``nats`` suite):
progress items per second to a plain nats-py client, and cancel over NATS.

The figures with absolute targets (cancel, 1,000 agents, NATS) run with the
scheduler free, as a deployment would.

Run it with ``python -m mistersmith.bench llm``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mistersmith import CommandCancelledError, Runtime, SupervisorSpec

from ._harness import ASK_TIMEOUT_S, alternate, in_order, pinned, quiet_logs
from ._llm_kind import ENTERED, BenchLlm
from ._llm_nats import NatsSizes, bench_nats
from ._options import Options
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; ``QUICK`` is for the smoke test."""

    warmup: int
    ask_rounds: int
    asks_per_round: int
    cancels: int
    agents: int
    nap_s: float
    nap_rounds: int
    nats: NatsSizes


FULL = Sizes(warmup=200, ask_rounds=20, asks_per_round=500, cancels=400, agents=1_000, nap_s=1.0, nap_rounds=4,
             nats=NatsSizes(progress_rounds=8, items_per_round=20_000, cancels=300))
QUICK = Sizes(warmup=20, ask_rounds=2, asks_per_round=50, cancels=20, agents=50, nap_s=0.2, nap_rounds=1,
              nats=NatsSizes(progress_rounds=1, items_per_round=500, cancels=10))


def _cpu_note(cpu: int | None) -> str:
    return "free" if cpu is None else f"cpu {cpu}"


# -- async ask vs sync ask -------------------------------------------------------------


def _asks(rt: Runtime, agent: str, cmd: str, n: int) -> list[float]:
    payload = {"n": 1}
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        rt.ask(agent, cmd, payload, timeout=ASK_TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


def bench_async_ask(rt: Runtime, sizes: Sizes, cpu: int | None) -> Figure:
    """p50 of each round (a fresh agent per round, both handlers on it), median over rounds."""
    ours_p50: list[float] = []
    theirs_p50: list[float] = []
    ours_all: list[float] = []
    theirs_all: list[float] = []
    n = sizes.asks_per_round
    for _, ours_first in alternate(sizes.ask_rounds):
        agent = rt.spawn(BenchLlm)
        try:
            _asks(rt, agent, "aecho", sizes.warmup)
            _asks(rt, agent, "echo", sizes.warmup)
            mine, other = in_order(ours_first, lambda: _asks(rt, agent, "aecho", n),
                                   lambda: _asks(rt, agent, "echo", n))
        finally:
            rt.stop(agent)
        ours_p50.append(percentile(mine, 50))
        theirs_p50.append(percentile(other, 50))
        ours_all += mine
        theirs_all += other
    return Figure(
        key="async_ask_p50", name="ask to an async handler, p50 (vs sync)", unit="us",
        ours=statistics.median(ours_p50), baseline=statistics.median(theirs_p50),
        target=Target("<=", 1.5, relative=True),
        extra={"p99": percentile(ours_all, 99), "baseline_p99": percentile(theirs_all, 99),
               "rounds": sizes.ask_rounds, "asks_per_round": n, "threads": _cpu_note(cpu)},
        shown=("p99", "baseline_p99", "threads"),
    )


# -- cancel in process -----------------------------------------------------------------


def _waiter(call: Callable[[int], None], n: int, times: queue.SimpleQueue[int | BaseException]) -> threading.Thread:
    """A thread that makes ``n`` calls, each expected to be cancelled, and reports when each ended."""

    def main() -> None:
        for i in range(n):
            try:
                call(i)
            except BaseException as exc:  # noqa: BLE001 - reported to the measuring thread
                times.put(time.perf_counter_ns() if _cancelled(exc) else exc)
            else:
                times.put(RuntimeError("the call was not cancelled"))

    thread = threading.Thread(target=main, name="bench-cancel-waiter", daemon=True)
    thread.start()
    return thread


def _cancelled(exc: BaseException) -> bool:
    return isinstance(exc, (CommandCancelledError, asyncio.CancelledError, concurrent.futures.CancelledError))


def _cancel_samples(n: int, call: Callable[[int], None], entered: Callable[[], None],
                    cancel: Callable[[int], None]) -> list[float]:
    """``n`` times: wait until the call runs (``entered``), ``cancel`` it, time until its waiter heard."""
    times: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()
    thread = _waiter(call, n, times)
    out: list[float] = []
    for i in range(n):
        entered()
        t0 = time.perf_counter_ns()
        cancel(i)
        ended = times.get(timeout=ASK_TIMEOUT_S)
        if isinstance(ended, BaseException):
            raise RuntimeError(f"cancel sample {i}: the waiter got {ended!r}") from ended
        out.append((ended - t0) / 1_000)
    thread.join(ASK_TIMEOUT_S)
    return out


def _cancel_ours(rt: Runtime, agent: str, n: int, tag: str) -> list[float]:
    def call(i: int) -> None:
        rt.ask(agent, "forever", timeout=ASK_TIMEOUT_S, correlation_id=f"{tag}-{i}")

    def entered() -> None:
        if not ENTERED.wait(ASK_TIMEOUT_S):
            raise RuntimeError("the forever handler did not start")
        ENTERED.clear()

    def cancel(i: int) -> None:
        if not rt.cancel(agent, f"{tag}-{i}"):
            raise RuntimeError(f"nothing to cancel for {tag}-{i}")

    return _cancel_samples(n, call, entered, cancel)


def _cancel_raw(n: int) -> list[float]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-raw-loop", daemon=True)
    thread.start()
    tasks: queue.SimpleQueue[asyncio.Task[Any]] = queue.SimpleQueue()

    async def forever() -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.put(task)
        await asyncio.Event().wait()

    pending: list[asyncio.Task[Any]] = []

    def entered() -> None:
        pending.append(tasks.get(timeout=ASK_TIMEOUT_S))

    def call(i: int) -> None:
        asyncio.run_coroutine_threadsafe(forever(), loop).result(ASK_TIMEOUT_S)

    def cancel(i: int) -> None:
        loop.call_soon_threadsafe(pending.pop().cancel)

    try:
        return _cancel_samples(n, call, entered, cancel)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(ASK_TIMEOUT_S)
        loop.close()


def bench_cancel(rt: Runtime, sizes: Sizes) -> Figure:
    agent = rt.spawn(BenchLlm)
    try:
        _cancel_ours(rt, agent, max(1, sizes.warmup // 10), "warm")
        _cancel_raw(max(1, sizes.warmup // 10))
        rounds = 4 if sizes.cancels >= 40 else 2
        per = max(1, sizes.cancels // rounds)
        ours: list[float] = []
        theirs: list[float] = []
        for i, ours_first in alternate(rounds):
            mine, other = in_order(ours_first, lambda: _cancel_ours(rt, agent, per, f"r{i}"),
                                   lambda: _cancel_raw(per))
            ours += mine
            theirs += other
        restarts = rt.get_agent(agent)["restart_count"]
    finally:
        rt.stop(agent)
    return Figure(
        key="cancel_p50", name="cancel -> caller gets cancelled, in process, p50", unit="ms",
        ours=percentile(ours, 50) / 1_000, baseline=percentile(theirs, 50) / 1_000,
        target=Target("<=", 2.0, relative=False),
        extra={"p99": percentile(ours, 99) / 1_000, "baseline_p99": percentile(theirs, 99) / 1_000,
               "cancels": len(ours), "restarts": restarts},
        shown=("p99", "baseline_p99"),
    )


# -- 1,000 agents awaiting at once -----------------------------------------------------


async def _naps_ours(rt: Runtime, agents: list[str], seconds: float) -> float:
    payload = {"seconds": seconds}
    t0 = time.perf_counter()
    await asyncio.gather(*(rt.aask(a, "nap", payload, timeout=ASK_TIMEOUT_S * 6) for a in agents))
    return time.perf_counter() - t0


async def _naps_raw(n: int, seconds: float) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(seconds) for _ in range(n)))
    return time.perf_counter() - t0


def bench_many_naps(rt: Runtime, sizes: Sizes, progress: Callable[[str], None]) -> Figure:
    t0 = time.perf_counter()
    agents = [rt.spawn(BenchLlm, mailbox_size=4) for _ in range(sizes.agents)]
    spawn_s = time.perf_counter() - t0
    try:
        async def measure() -> tuple[list[float], list[float]]:
            await _naps_ours(rt, agents, 0.0)  # each agent makes its loop
            ours: list[float] = []
            theirs: list[float] = []
            for i, ours_first in alternate(sizes.nap_rounds):
                progress(f"{sizes.agents:,} agents x {sizes.nap_s:g} s: round {i + 1}/{sizes.nap_rounds}")
                if ours_first:
                    ours.append(await _naps_ours(rt, agents, sizes.nap_s))
                    theirs.append(await _naps_raw(sizes.agents, sizes.nap_s))
                else:
                    theirs.append(await _naps_raw(sizes.agents, sizes.nap_s))
                    ours.append(await _naps_ours(rt, agents, sizes.nap_s))
            return ours, theirs

        ours, theirs = asyncio.run(measure())
    finally:
        t1 = time.perf_counter()
        for agent in agents:
            rt.stop(agent)
        stop_s = time.perf_counter() - t1
    return Figure(
        key="agents_nap_s", name=f"{sizes.agents:,} agents each awaiting {sizes.nap_s:g} s at once", unit="s",
        ours=statistics.median(ours), baseline=statistics.median(theirs),
        target=Target("<=", 1.2 * sizes.nap_s, relative=False),
        extra={"worst": max(ours), "baseline_worst": max(theirs), "agents": sizes.agents, "rounds": len(ours),
               "spawn_s": spawn_s, "stop_s": stop_s},
        shown=("worst", "spawn_s"),
    )


# -- the suite ---------------------------------------------------------------------------


def run(options: Options) -> list[Figure]:
    """Measure every figure of the suite (see the module's docstring)."""
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    figures: list[Figure] = []
    with quiet_logs():
        rt = Runtime(root=SupervisorSpec("root", intensity=1_000_000, period_s=1.0))
        try:
            with pinned(options.pin) as cpu:
                where = "" if cpu is None else f", all threads on cpu {cpu}"
                progress(f"async vs sync ask: {sizes.ask_rounds} rounds x {sizes.asks_per_round} asks each{where}")
                figures.append(bench_async_ask(rt, sizes, cpu))
            progress(f"cancel in process: {sizes.cancels} cancels each side")
            figures.append(bench_cancel(rt, sizes))
            progress(f"{sizes.agents:,} agents x {sizes.nap_s:g} s: spawning")
            figures.append(bench_many_naps(rt, sizes, progress))
        finally:
            rt.close()
    figures.extend(bench_nats(sizes.nats, progress))
    return figures
