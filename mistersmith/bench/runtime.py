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
  (``python -m mistersmith.bench.runtime spawn ours|pykka N``) so that the
  other figures do not pollute its memory; vs ``ThreadingActor.start()``.

The two ratio figures (ask, send) run with every thread on one CPU unless
``--no-pin`` is given (see ``_pinned``); the figures with absolute targets
(restart, spawn, memory) run with the scheduler free, as a deployment would.

Run it with ``python -m mistersmith.bench runtime``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka

from mistersmith import AgentFailedError, RestartingError, Runtime, SupervisorSpec

from ._cli import Options, Progress
from ._report import Figure, Target, percentile

__all__ = ["FULL", "QUICK", "Sizes", "run"]


_ASK_TIMEOUT_S = 10.0
_CHILD_TIMEOUT_S = 600.0
_MB = 1_000_000

T = TypeVar("T")


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


class PykkaEcho(pykka.ThreadingActor):
    """The baseline: the most trivial pykka actor. ``"fail"`` raises."""

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise RuntimeError("echo was told to fail")
        return message


class _Discard(logging.Handler):
    """Formats each record (a real handler would) and drops it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep crash tracebacks off stderr, but still pay for formatting them."""
    log = logging.getLogger("mistersmith")
    handler = _Discard()
    saved = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = saved


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
            ref.stop(block=True, timeout=_ASK_TIMEOUT_S)
    finally:
        rt.stop(agent)


def _bench_runtime() -> Runtime:
    # Crashing hundreds of times a second is the point here: lift the intensity.
    return Runtime(root=SupervisorSpec("root", intensity=1_000_000, period_s=1.0))


def _alternate(rounds: int) -> Iterator[tuple[int, bool]]:
    """Round numbers, and whether ours goes first in that round (ABBA order)."""
    for i in range(rounds):
        yield i, i % 2 == 0


def _in_order(ours_first: bool, ours: Callable[[], T], theirs: Callable[[], T]) -> tuple[T, T]:
    if ours_first:
        mine = ours()
        return mine, theirs()
    other = theirs()
    return ours(), other


def _task_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextmanager
def _pinned(enabled: bool) -> Iterator[int | None]:
    """Pin every thread of this process, and the threads they start, to one CPU.

    Yields the CPU, or None when pinning is off or unsupported. Whether an
    actor thread shares its caller's CPU swings a round trip by 2-3x, for
    pykka and for us alike, and it is a coin toss per thread: on one CPU the
    comparison measures what each library costs instead of where threads landed.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    for tid in _task_ids():
        with suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, {cpu})
    try:
        yield cpu
    finally:
        for tid in _task_ids():
            with suppress(OSError):
                os.sched_setaffinity(tid, allowed)


def _cpu_note(cpu: int | None) -> str:
    return "free" if cpu is None else f"cpu {cpu}"


# -- ask ---------------------------------------------------------------------


def _asks_ours(rt: Runtime, agent: str, n: int) -> list[float]:
    payload = {"n": 1}
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        rt.ask(agent, "echo", payload, timeout=_ASK_TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


def _asks_pykka(ref: pykka.ActorRef[Any], n: int) -> list[float]:
    payload = {"n": 1}
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        ref.ask(payload, timeout=_ASK_TIMEOUT_S)
        out.append((clock() - t0) / 1_000)
    return out


def bench_ask(rt: Runtime, sizes: Sizes, cpu: int | None) -> Figure:
    """p50 of each round (a fresh pair per round), then the median over rounds."""
    ours_p50: list[float] = []
    theirs_p50: list[float] = []
    ours_all: list[float] = []
    theirs_all: list[float] = []
    n = sizes.asks_per_round
    for _, ours_first in _alternate(sizes.ask_rounds):
        with _echo_pair(rt) as (agent, ref):
            _asks_ours(rt, agent, sizes.warmup)
            _asks_pykka(ref, sizes.warmup)
            mine, other = _in_order(ours_first, lambda: _asks_ours(rt, agent, n), lambda: _asks_pykka(ref, n))
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
    rt.ask(agent, "ping", timeout=_ASK_TIMEOUT_S * 6)
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def _send_rate_pykka(ref: pykka.ActorRef[Any], n: int) -> float:
    payload = {"n": 1}
    tell = ref.tell
    t0 = time.perf_counter_ns()
    for _ in range(n):
        tell(payload)
    ref.ask("ping", timeout=_ASK_TIMEOUT_S * 6)
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
    for _, ours_first in _alternate(sizes.send_rounds):
        with _echo_pair(rt, mailbox_size=n + sizes.warmup + 1) as (agent, ref):
            _send_rate_ours(rt, agent, sizes.warmup)
            _send_rate_pykka(ref, sizes.warmup)
            mine, other = _in_order(ours_first, lambda: _send_rate_ours(rt, agent, n), lambda: _send_rate_pykka(ref, n))
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
        rt.ask(agent, "fail", timeout=_ASK_TIMEOUT_S)
    except AgentFailedError:
        pass
    else:  # pragma: no cover - the echo agent always fails on "fail"
        raise RuntimeError("the echo agent did not fail on 'fail'")
    while True:
        try:
            rt.ask(agent, "ping", timeout=_ASK_TIMEOUT_S)
            break
        except RestartingError:  # only with a backoff, which the bench does not set
            continue
    return (time.perf_counter_ns() - t0) / 1e6


def _restart_pykka(ref: pykka.ActorRef[Any]) -> tuple[float, pykka.ActorRef[Any]]:
    t0 = time.perf_counter_ns()
    try:
        ref.ask("fail", timeout=_ASK_TIMEOUT_S)
    except RuntimeError:
        pass
    ref.stop(block=True, timeout=_ASK_TIMEOUT_S)
    ref = PykkaEcho.start()
    ref.ask("ping", timeout=_ASK_TIMEOUT_S)
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
        for _, ours_first in _alternate(sizes.restarts):
            mine, other = _in_order(ours_first, lambda: _restart_ours(rt, agent), pykka_once)
            ours.append(mine)
            theirs.append(other)
    finally:
        ref.stop(block=True, timeout=_ASK_TIMEOUT_S)
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


# -- many agents, in a fresh interpreter -----------------------------------------


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _spawn_child(side: str, n: int) -> dict[str, float]:
    """Runs in the child interpreter: spawn ``n`` agents, report, stop them all."""
    base_rss = _peak_rss_bytes()
    if side == "ours":
        with _quiet_logs():
            rt = Runtime(root=SupervisorSpec("root", shutdown_s=600.0))
            try:
                t0 = time.perf_counter()
                ids = [rt.spawn("echo") for _ in range(n)]
                spawn_s = time.perf_counter() - t0
                rt.ask(ids[-1], "ping", timeout=_ASK_TIMEOUT_S)
                peak = _peak_rss_bytes()
                t1 = time.perf_counter()
            finally:
                rt.close()
            stop_s = time.perf_counter() - t1
    elif side == "pykka":
        t0 = time.perf_counter()
        refs = [PykkaEcho.start() for _ in range(n)]
        spawn_s = time.perf_counter() - t0
        refs[-1].ask("ping", timeout=_ASK_TIMEOUT_S)
        peak = _peak_rss_bytes()
        t1 = time.perf_counter()
        pykka.ActorRegistry.stop_all(block=True)
        stop_s = time.perf_counter() - t1
    else:
        raise ValueError(f"side={side!r} is not allowed; use 'ours' or 'pykka'")
    return {"spawn_s": spawn_s, "stop_s": stop_s, "peak_rss": peak, "base_rss": base_rss}


def _spawn_in_child(side: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench.runtime", "spawn", side, str(n)],
        capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"spawn child ({side}, {n} agents) exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_many(sizes: Sizes, progress: Progress) -> list[Figure]:
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for i, ours_first in _alternate(sizes.spawn_rounds):
        progress(f"  {sizes.agents:,} agents, round {i + 1}/{sizes.spawn_rounds}")
        for side in ("ours", "pykka") if ours_first else ("pykka", "ours"):
            (ours if side == "ours" else theirs).append(_spawn_in_child(side, sizes.agents))
    n = sizes.agents
    rate = statistics.median(n / r["spawn_s"] for r in ours)
    base_rate = statistics.median(n / r["spawn_s"] for r in theirs)
    peak = max(r["peak_rss"] for r in ours) / _MB
    base_peak = max(r["peak_rss"] for r in theirs) / _MB
    idle = statistics.median(r["base_rss"] for r in ours) / _MB
    return [
        Figure(
            key="spawn_rate",
            name="spawn rate",
            unit="agents/s",
            ours=rate,
            baseline=base_rate,
            target=Target(">=", 1_000.0, relative=False),
            extra={"agents": n, "rounds": len(ours), "stop_all_s": statistics.median(r["stop_s"] for r in ours),
                   "baseline_stop_all_s": statistics.median(r["stop_s"] for r in theirs)},
            shown=("agents", "stop_all_s"),
        ),
        Figure(
            key="peak_rss",
            name="peak RSS",
            unit="MB",
            ours=peak,
            baseline=base_peak,
            target=Target("<=", 1_500.0, relative=False),
            extra={"agents": n, "interpreter_mb": idle, "kb_per_agent": (peak - idle) * 1_000 / n},
            shown=("agents", "kb_per_agent"),
        ),
    ]


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
    with _quiet_logs():
        rt = _bench_runtime()
        try:
            with _pinned(options.pin) as cpu:
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
    figures.extend(bench_many(sizes, progress))
    return figures


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "spawn":
        print("usage: python -m mistersmith.bench.runtime spawn ours|pykka N (internal; "
              "use python -m mistersmith.bench runtime)", file=sys.stderr)
        return 2
    result = _spawn_child(argv[1], int(argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
