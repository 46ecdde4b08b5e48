"""Spawn rate and peak memory of N agents, each side in a fresh interpreter.

A fresh interpreter keeps the other figures out of the memory figure. The
parent runs ``python -m mistersmith.bench._many ours|pykka N`` and reads one
JSON line from its stdout.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import pykka

from mistersmith import Runtime, SupervisorSpec

from ._options import Progress
from ._harness import ASK_TIMEOUT_S, PykkaEcho, alternate, quiet_logs
from ._report import Figure, Target

__all__ = ["bench_many"]

_CHILD_TIMEOUT_S = 600.0
_MB = 1_000_000


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


def _spawn_here(side: str, n: int) -> dict[str, float]:
    """In the child interpreter: spawn ``n`` agents, note the peak RSS, stop them all."""
    base_rss = _peak_rss_bytes()
    if side == "ours":
        with quiet_logs():
            rt = Runtime(root=SupervisorSpec("root", shutdown_s=_CHILD_TIMEOUT_S))
            try:
                t0 = time.perf_counter()
                ids = [rt.spawn("echo") for _ in range(n)]
                spawn_s = time.perf_counter() - t0
                rt.ask(ids[-1], "ping", timeout=ASK_TIMEOUT_S)
                peak = _peak_rss_bytes()
                t1 = time.perf_counter()
            finally:
                rt.close()
            stop_s = time.perf_counter() - t1
    elif side == "pykka":
        t0 = time.perf_counter()
        refs = [PykkaEcho.start() for _ in range(n)]
        spawn_s = time.perf_counter() - t0
        refs[-1].ask("ping", timeout=ASK_TIMEOUT_S)
        peak = _peak_rss_bytes()
        t1 = time.perf_counter()
        pykka.ActorRegistry.stop_all(block=True)
        stop_s = time.perf_counter() - t1
    else:
        raise ValueError(f"side={side!r} is not allowed; use 'ours' or 'pykka'")
    return {"spawn_s": spawn_s, "stop_s": stop_s, "peak_rss": peak, "base_rss": base_rss}


def _spawn_in_child(side: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench._many", side, str(n)],
        capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"spawn child ({side}, {n} agents) exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_many(agents: int, rounds: int, progress: Progress) -> list[Figure]:
    """Spawn rate (median over rounds) and peak RSS (highest) of ``agents`` agents."""
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for i, ours_first in alternate(rounds):
        progress(f"  {agents:,} agents, round {i + 1}/{rounds}")
        for side in ("ours", "pykka") if ours_first else ("pykka", "ours"):
            (ours if side == "ours" else theirs).append(_spawn_in_child(side, agents))
    peak = max(r["peak_rss"] for r in ours) / _MB
    idle = statistics.median(r["base_rss"] for r in ours) / _MB
    return [
        Figure(
            key="spawn_rate",
            name="spawn rate",
            unit="agents/s",
            ours=statistics.median(agents / r["spawn_s"] for r in ours),
            baseline=statistics.median(agents / r["spawn_s"] for r in theirs),
            target=Target(">=", 1_000.0, relative=False),
            extra={"agents": agents, "rounds": rounds, "stop_all_s": statistics.median(r["stop_s"] for r in ours),
                   "baseline_stop_all_s": statistics.median(r["stop_s"] for r in theirs)},
            shown=("agents", "stop_all_s"),
        ),
        Figure(
            key="peak_rss",
            name="peak RSS",
            unit="MB",
            ours=peak,
            baseline=max(r["peak_rss"] for r in theirs) / _MB,
            target=Target("<=", 1_500.0, relative=False),
            extra={"agents": agents, "interpreter_mb": idle, "kb_per_agent": (peak - idle) * 1_000 / agents},
            shown=("agents", "kb_per_agent"),
        ),
    ]


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("ours", "pykka") or not argv[1].isdigit() or int(argv[1]) < 1:
        print("usage: python -m mistersmith.bench._many ours|pykka N (internal; "
              "use python -m mistersmith.bench runtime)", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(_spawn_here(argv[0], int(argv[1]))) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
