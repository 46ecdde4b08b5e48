"""The nats benchmark suite runs and reports every figure. Smoke only: no timing target is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

NATS_FIGURES = {"request_p50", "request_p99", "tell_throughput", "task_throughput"}


def test_nats_suite_quick_json_has_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench", "nats", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    figures = {f["key"]: f for f in doc["figures"]}
    assert set(figures) == NATS_FIGURES
    for key, figure in figures.items():
        assert figure["ours"] > 0, key
        if key != "task_throughput":  # reported, with no baseline
            assert figure["baseline"] > 0 and figure["passed"] in (True, False), key
    assert "[bench nats]" in done.stderr
