"""The suite registry and ``python -m mistersmith.bench SUITE [--json] [--quick]``.

A suite is a module of this package with a ``run(Options) -> list[Figure]``.
Add one by naming it in ``BASELINES`` (with what its baseline column holds);
``all`` runs every registered suite in order. A suite's module is imported
here, by name, only when it runs, so ``--help`` stays fast and a suite's
dependencies (a NATS server, PostgreSQL...) are needed only by it. The
suites import ``_options``, never this module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import TextIO, cast

from ._options import Options, Progress, Suite
from ._report import Figure, machine, render_json, render_table

__all__ = ["BASELINES", "SUITES", "Options", "Progress", "Suite", "main", "run_suites"]

# Each suite (the module mistersmith.bench.<name>), in order, and what its baseline column holds.
BASELINES = {"runtime": "raw pykka", "journal": "raw psycopg", "nats": "raw nats-py", "http": "bare Starlette",
             "state": "baseline (see notes)", "cluster": "same-server (route hop only)",
             "console": "bare Starlette SSE", "llm": "baseline (sync / asyncio / nats-py)",
             "tracing": "tracing off", "faults": "baseline (none: the required result)"}


def _suite(name: str) -> Suite:
    def run(options: Options) -> list[Figure]:
        module = importlib.import_module(f"{__package__}.{name}")
        return cast(list[Figure], module.run(options))

    run.__name__ = run.__qualname__ = f"run_{name}"
    return run


SUITES: dict[str, Suite] = {name: _suite(name) for name in BASELINES}

ALL = "all"


def _progress_to(stream: TextIO | None, suite: str) -> Progress:
    def progress(message: str) -> None:
        if stream is not None:
            print(f"[bench {suite}] {message}", file=stream, flush=True)

    return progress


def run_suites(
    names: Sequence[str], *, quick: bool = False, pin: bool = True, stream: TextIO | None = sys.stderr
) -> list[tuple[str, list[Figure]]]:
    """Run the named suites in order; progress lines go to ``stream`` (None: silent)."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; use one of: {', '.join([*SUITES, ALL])}")
    return [(name, SUITES[name](Options(quick, pin, _progress_to(stream, name)))) for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 even if a target is missed)."""
    parser = argparse.ArgumentParser(
        prog="python -m mistersmith.bench",
        description="Measure MisterSmith against its raw baselines (pykka, nats-py, psycopg, Starlette), side by side, and print the figures against their targets.",
    )
    parser.add_argument("suite", choices=[*SUITES, ALL], help="which suite to run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds (smoke tests; not figures)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the scheduler place threads freely for ratio figures too (noisier)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    names = list(SUITES) if args.suite == ALL else [args.suite]
    results = run_suites(names, quick=args.quick, pin=args.pin, stream=None if args.quiet else sys.stderr)
    info = machine()
    if args.json:
        print(json.dumps(render_json(args.suite, args.quick, results, info), indent=2))
        return 0
    flags = "".join(f" {flag}" for flag, on in (("--quick", args.quick), ("--no-pin", not args.pin)) if on)
    load = ", ".join(f"{x:.2f}" for x in info["loadavg"])
    print(f"# python -m mistersmith.bench {args.suite}{flags}")
    print(f"# {info['nproc']} CPUs, Python {info['python']}, pykka {info['pykka']}, load average {load}")
    for name, figures in results:
        print(f"\n## {name}\n")
        print(render_table(figures, BASELINES.get(name, "baseline")))
    if args.quick:
        print("\n(--quick: small sizes for smoke tests; these are not the figures)")
    return 0
