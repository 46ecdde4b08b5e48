"""The ``runtime`` suite: the actor core against raw pykka, side by side.

Every figure is measured in the same run as its raw-pykka baseline, in
interleaved rounds (ours first, then theirs first...), and each round takes
a fresh pair of actors; figures are medians over rounds. The machine is
usually busy with something else, so the ratios are what count.

- ``ask p50``: ``Runtime.ask`` to an ``echo`` agent vs ``ActorRef.ask`` to a
  ``ThreadingActor`` whose ``on_receive`` returns the message.
- ``send throughput``: ``Runtime.send`` of N commands then an ``ask`` as a
  barrier, vs N ``ActorRef.tell`` then an ``ask``.
- ``restart p50``: from sending ``fail`` until ``ping`` answers from the new
  incarnation (the crash's own round trip included), vs a hand-made pykka
  restart (the failing ask, ``stop``, ``start``, ``ask``).
- ``spawn rate`` and ``peak RSS``: N agents spawned in a fresh interpreter
  (``python -m mistersmith.bench._many ours|pykka N``) so that the
  other figures do not pollute its memory; vs ``ThreadingActor.start()``.

The two ratio figures (ask, send) run with every thread on one CPU unless
``--no-pin`` is given (see ``_harness.pinned``); the figures with absolute targets
(restart, spawn, memory) run with the scheduler free, as a deployment would.

Run it with ``python -m mistersmith.bench runtime``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pykka

from mistersmith import AgentFailedError, RestartingError, Runtime, SupervisorSpec

from ._options import Options
from ._harness import ASK_TIMEOUT_S, PykkaEcho, alternate, in_order, pinned, quiet_logs
from ._many import bench_many
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; ``QUICK`` is for the smoke test."""

    warmup: int
    ask_rounds: int
    asks_per_round: int
    send_rounds: int
    sends_per_round: int
    restarts: int
    agents: int
    spawn_rounds: int


FULL = Sizes(warmup=200, ask_rounds=20, asks_per_round=500, send_rounds=12, sends_per_round=20_000,
             restarts=500, agents=10_000, spawn_rounds=2)
QUICK = Sizes(warmup=50, ask_rounds=4, asks_per_round=100, send_rounds=3, sends_per_round=500,
              restarts=20, agents=200, spawn_rounds=1)


@contextmanager
def _echo_pair(rt: Runtime, **options: Any) -> Iterator[tuple[str, pykka.ActorRef[Any]]]:
    """A fresh echo agent (``options`` go to its spec) and a fresh pykka echo actor.

    Each round takes a new pair, so where the scheduler happens to put the two
    threads is drawn again for every round rather than once for the run.
    """
    agent = rt.spawn("echo", **options)
    try:
        ref = PykkaEcho.start()
        try:
            yield agent, ref
        finally:
            ref.stop(block=True, timeout=ASK_TIMEOUT_S)
    finally:
        rt.stop(agent)


def _bench_runtime() -> Runtime:
    # Crashing hundreds of times a second is the point here: lift the intensity.
    return Runtime(root=SupervisorSpec("root", intensity=1_000_000, period_s=1.0))


def _cpu_note(cpu: int | None) -> str:
    return "free" if cpu is None else f"cpu {cpu}"


# -- ask ---------------------------------------------------------------------


def _asks_ours(rt: Runtime, agent: str, n: int) -> list[float]:
    payload = {"n": 1}
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        rt.ask(agent, "echo", payload, timeout=ASK_TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


def _asks_pykka(ref: pykka.ActorRef[Any], n: int) -> list[float]:
    payload = {"n": 1}
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        ref.ask(payload, timeout=ASK_TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


def bench_ask(rt: Runtime, sizes: Sizes, cpu: int | None) -> Figure:
    """p50 of each round (a fresh pair per round), then the median over rounds."""
    ours_p50: list[float] = []
    theirs_p50: list[float] = []
    ours_all: list[float] = []
    theirs_all: list[float] = []
    n = sizes.asks_per_round
    for _, ours_first in alternate(sizes.ask_rounds):
        with _echo_pair(rt) as (agent, ref):
            _asks_ours(rt, agent, sizes.warmup)
            _asks_pykka(ref, sizes.warmup)
            mine, other = in_order(ours_first, lambda: _asks_ours(rt, agent, n), lambda: _asks_pykka(ref, n))
        ours_p50.append(percentile(mine, 50))
        theirs_p50.append(percentile(other, 50))
        ours_all += mine
        theirs_all += other
    return Figure(
        key="ask_p50",
        name="ask round trip p50",
        unit="us",
        ours=statistics.median(ours_p50),
        baseline=statistics.median(theirs_p50),
        target=Target("<=", 1.5, relative=True),
        extra={"p99": percentile(ours_all, 99), "baseline_p99": percentile(theirs_all, 99),
               "rounds": sizes.ask_rounds, "asks_per_round": n, "threads": _cpu_note(cpu)},
        shown=("p99", "baseline_p99", "threads"),
    )


# -- send --------------------------------------------------------------------


def _send_rate_ours(rt: Runtime, agent: str, n: int) -> float:
    payload = {"n": 1}
    send = rt.send
    t0 = time.perf_counter_ns()
    for _ in range(n):
        send(agent, "echo", payload)
    rt.ask(agent, "ping", timeout=ASK_TIMEOUT_S * 6)
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def _send_rate_pykka(ref: pykka.ActorRef[Any], n: int) -> float:
    payload = {"n": 1}
    tell = ref.tell
    t0 = time.perf_counter_ns()
    for _ in range(n):
        tell(payload)
    ref.ask("ping", timeout=ASK_TIMEOUT_S * 6)
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def bench_send(rt: Runtime, sizes: Sizes, cpu: int | None) -> Figure:
    """Messages per second of each round (a fresh pair per round), median over rounds.

    A round is long enough (20,000 messages, tens of ms) that one 5 ms GIL
    switch interval more or less does not decide it; the agent's mailbox bound
    is raised to hold a whole round, as pykka's inbox is unbounded.
    """
    ours: list[float] = []
    theirs: list[float] = []
    n = sizes.sends_per_round
    for _, ours_first in alternate(sizes.send_rounds):
        with _echo_pair(rt, mailbox_size=n + sizes.warmup + 1) as (agent, ref):
            _send_rate_ours(rt, agent, sizes.warmup)
            _send_rate_pykka(ref, sizes.warmup)
            mine, other = in_order(ours_first, lambda: _send_rate_ours(rt, agent, n), lambda: _send_rate_pykka(ref, n))
        ours.append(mine)
        theirs.append(other)
    return Figure(
        key="send_throughput",
        name="send throughput",
        unit="msg/s",
        ours=statistics.median(ours),
        baseline=statistics.median(theirs),
        target=Target(">=", 0.7, relative=True),
        extra={"rounds": sizes.send_rounds, "messages_per_round": n, "threads": _cpu_note(cpu)},
        shown=("threads",),
    )


# -- restart -----------------------------------------------------------------


def _restart_ours(rt: Runtime, agent: str) -> float:
    t0 = time.perf_counter_ns()
    try:
        rt.ask(agent, "fail", timeout=ASK_TIMEOUT_S)
    except AgentFailedError:
        pass
    else:  # pragma: no cover - the echo agent always fails on "fail"
        raise RuntimeError("the echo agent did not fail on 'fail'")
    while True:
        try:
            rt.ask(agent, "ping", timeout=ASK_TIMEOUT_S)
            break
        except RestartingError:  # only with a backoff, which the bench does not set
            continue
    return (time.perf_counter_ns() - t0) / 1e6


def _restart_pykka(ref: pykka.ActorRef[Any]) -> tuple[float, pykka.ActorRef[Any]]:
    t0 = time.perf_counter_ns()
    try:
        ref.ask("fail", timeout=ASK_TIMEOUT_S)
    except RuntimeError:
        pass
    ref.stop(block=True, timeout=ASK_TIMEOUT_S)
    ref = PykkaEcho.start()
    ref.ask("ping", timeout=ASK_TIMEOUT_S)
    return (time.perf_counter_ns() - t0) / 1e6, ref


def bench_restart(rt: Runtime, sizes: Sizes) -> Figure:
    agent = rt.spawn("echo")
    ours: list[float] = []
    theirs: list[float] = []
    ref = PykkaEcho.start()

    def pykka_once() -> float:
        nonlocal ref
        elapsed, ref = _restart_pykka(ref)
        return elapsed

    try:
        for _ in range(max(1, sizes.warmup // 10)):
            _restart_ours(rt, agent)
            pykka_once()
        for _, ours_first in alternate(sizes.restarts):
            mine, other = in_order(ours_first, lambda: _restart_ours(rt, agent), pykka_once)
            ours.append(mine)
            theirs.append(other)
    finally:
        ref.stop(block=True, timeout=ASK_TIMEOUT_S)
        rt.stop(agent)
    return Figure(
        key="restart_p50",
        name="restart latency p50",
        unit="ms",
        ours=percentile(ours, 50),
        baseline=percentile(theirs, 50),
        target=Target("<=", 2.0, relative=False),
        extra={"p99": percentile(ours, 99), "baseline_p99": percentile(theirs, 99), "restarts": len(ours)},
        shown=("p99",),
    )


# -- the suite ---------------------------------------------------------------


def run(options: Options) -> list[Figure]:
    """Measure every figure of the suite.

    ``ask`` and ``send`` are ratios, measured with every thread on one CPU
    (unless ``options.pin`` is off); restart, spawn and memory have absolute
    targets and run with the scheduler free, as a deployment would.
    """
    sizes = QUICK if options.quick else FULL
    progress = options.progress
    figures: list[Figure] = []
    with quiet_logs():
        rt = _bench_runtime()
        try:
            with pinned(options.pin) as cpu:
                where = "" if cpu is None else f", all threads on cpu {cpu}"
                progress(f"ask round trip: {sizes.ask_rounds} rounds x {sizes.asks_per_round} asks each side{where}")
                figures.append(bench_ask(rt, sizes, cpu))
                progress(f"send throughput: {sizes.send_rounds} rounds x {sizes.sends_per_round:,} messages each side{where}")
                figures.append(bench_send(rt, sizes, cpu))
            progress(f"restart latency: {sizes.restarts} crashes each side")
            figures.append(bench_restart(rt, sizes))
        finally:
            rt.close()
    progress(f"spawn rate and peak RSS: {sizes.agents:,} agents in a fresh interpreter each side")
    figures.extend(bench_many(sizes.agents, sizes.spawn_rounds, progress))
    return figures
