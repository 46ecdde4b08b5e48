"""The benchmark runs and reports every figure. Smoke only: no timing target is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mistersmith.bench import SUITES, Figure, Target, main
from mistersmith.bench._report import percentile, render_json, render_table

RUNTIME_FIGURES = {"ask_p50", "send_throughput", "restart_p50", "spawn_rate", "peak_rss"}
STATE_FIGURES = {"durable_ask_p50", "durable_ask_p50_abs", "commit_throughput", "effect_overhead_p50",
                 "write_ahead_p50", "recovery_s"}
CLUSTER_FIGURES = {"lease_load_commits_s", "route_hop_p50", "failover_s", "drain_s", "drain_failed"}
LLM_FIGURES = {"async_ask_p50", "cancel_p50", "agents_nap_s", "progress_rate", "nats_cancel_p50"}


def test_runtime_suite_quick_json_has_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench", "runtime", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["suite"] == "runtime" and doc["quick"] is True
    assert doc["machine"]["nproc"] >= 1
    figures = {f["key"]: f for f in doc["figures"]}
    assert set(figures) == RUNTIME_FIGURES
    for key, figure in figures.items():
        assert figure["suite"] == "runtime"
        assert figure["ours"] > 0, key
        assert figure["baseline"] > 0, key
        assert figure["ratio"] > 0, key
        assert figure["passed"] in (True, False), key
        assert figure["target"]["op"] in ("<=", ">="), key
    assert figures["restart_p50"]["extra"]["p99"] >= figures["restart_p50"]["ours"]
    assert "[bench runtime]" in done.stderr  # progress lines


def test_llm_suite_quick_json_has_every_figure_each_with_its_baseline() -> None:
    done = subprocess.run(  # a nats-server and a serving process: ~5 s
        [sys.executable, "-m", "mistersmith.bench", "llm", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = {f["key"]: f for f in json.loads(done.stdout)["figures"]}
    assert set(figures) == LLM_FIGURES
    for key, figure in figures.items():
        assert figure["suite"] == "llm", key
        assert figure["ours"] > 0 and figure["baseline"] > 0, key
        assert figure["passed"] in (True, False), key
    assert figures["async_ask_p50"]["target"] == {"op": "<=", "value": 1.5, "relative": True}
    assert figures["cancel_p50"]["extra"]["restarts"] == 0  # a cancel is no crash
    assert figures["agents_nap_s"]["extra"]["agents"] == 50
    assert figures["agents_nap_s"]["ours"] >= 0.2  # every agent awaited its 0.2 s
    assert figures["progress_rate"]["extra"]["delivered"] == "500-500 of 500"
    assert figures["nats_cancel_p50"]["extra"]["cancels"] == 10
    assert "[bench llm]" in done.stderr


def test_state_suite_quick_json_has_every_figure(pg_admin: str) -> None:
    env = {**os.environ, "MISTERSMITH_DATABASE_URL": pg_admin}  # the test server: no initdb of its own
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench", "state", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    figures = {f["key"]: f for f in doc["figures"]}
    assert set(figures) == STATE_FIGURES
    for key, figure in figures.items():
        assert figure["suite"] == "state"
        assert figure["ours"] > 0 or key == "effect_overhead_p50", key  # a difference of two p50s
        assert figure["passed"] in (True, False), key
        if key != "recovery_s":
            assert figure["baseline"] > 0, key
    assert figures["recovery_s"]["baseline"] is None and figures["recovery_s"]["extra"]["agents"] == 20
    assert figures["commit_throughput"]["extra"]["agents"] == 10
    assert figures["effect_overhead_p50"]["extra"]["effects_recorded"] > 0
    assert "[bench state]" in done.stderr


def test_cluster_suite_quick_json_has_every_figure_and_says_its_lease_is_not_the_default(pg_admin: str) -> None:
    env = {**os.environ, "MISTERSMITH_DATABASE_URL": pg_admin}  # 3 serve children, 3 nats-servers: ~15 s
    done = subprocess.run(
        [sys.executable, "-m", "mistersmith.bench", "cluster", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert done.returncode == 0, done.stderr
    figures = {f["key"]: f for f in json.loads(done.stdout)["figures"]}
    assert set(figures) == CLUSTER_FIGURES
    assert all(f["suite"] == "cluster" and f["ours"] >= 0 for f in figures.values())
    assert figures["route_hop_p50"]["baseline"] > 0 and figures["route_hop_p50"]["ratio"] > 0
    failover = figures["failover_s"]
    assert failover["extra"]["settings"] == "lease 2 s, heartbeat 0.25 s, margin 0.5 s"  # --quick says so
    assert failover["ours"] >= failover["extra"]["lease_left_s"] > 0  # nothing answers before the lease runs out
    assert figures["drain_s"]["extra"]["handed_over"] == 20
    assert "--quick: lease 2 s" in done.stderr


FAULT_FIGURES = {"kill_lost", "kill_recovered", "kill_back_s", "nats_reconnect_s", "nats_tasks_lost",
                 "pg_events_lost", "disk_accepted", "disk_lost", "fuzz_unanswered", "fuzz_rss_growth",
                 "sse_over_limit_503", "rate_flood_passed"}


def test_faults_suite_quick_json_has_every_figure_and_each_required_result_holds(pg_admin: str) -> None:
    env = {**os.environ, "MISTERSMITH_DATABASE_URL": pg_admin}  # fault 3 still starts a PostgreSQL of its own
    done = subprocess.run(  # every fault of tests/faults/, tiny: ~30 s
        [sys.executable, "-m", "mistersmith.bench", "faults", "--quick", "--json"],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )
    assert done.returncode == 0, done.stderr
    figures = {f["key"]: f for f in json.loads(done.stdout)["figures"]}
    assert set(figures) == FAULT_FIGURES
    for key, figure in figures.items():
        assert figure["suite"] == "faults" and figure["baseline"] is None, key
        assert figure["passed"] is True, (key, figure["ours"], figure["extra"].get("problems"))
    assert figures["kill_recovered"]["ours"] == figures["kill_recovered"]["extra"]["agents"] == 4
    assert "[bench faults] 6." in done.stderr


def test_every_suite_is_callable_and_all_is_reserved() -> None:
    assert "runtime" in SUITES and "state" in SUITES and "all" not in SUITES
    assert all(callable(suite) for suite in SUITES.values())


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_relative_and_absolute_targets() -> None:
    at_most = Target("<=", 1.5, relative=True)
    assert at_most.met(15.0, 10.0) is True
    assert at_most.met(16.0, 10.0) is False
    assert at_most.met(1.0, None) is None
    at_least = Target(">=", 1_000.0, relative=False)
    assert at_least.met(1_000.0, None) is True
    assert at_least.met(999.0, 5_000.0) is False
    assert at_most.describe("us") == "<= 1.5x"
    assert at_least.describe("agents/s") == ">= 1,000 agents/s"


def test_percentile_interpolates() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_table_and_json_carry_the_same_figure() -> None:
    figure = Figure(
        key="ask_p50", name="ask round trip p50", unit="us", ours=30.0, baseline=20.0,
        target=Target("<=", 1.5, relative=True), extra={"p99": 90.0, "baseline_p99": 80.0},
        shown=("p99", "baseline_p99"),
    )
    table = render_table([figure])
    row = table.splitlines()[2]
    for cell in ("ask round trip p50", "30.0 us", "20.0 us", "1.50x", "<= 1.5x", "pass", "p99 90.0, baseline p99 80.0"):
        assert cell in row
    doc = render_json("runtime", False, [("runtime", [figure])], {"nproc": 2})
    assert doc["figures"] == [{"suite": "runtime", **figure.as_dict()}]
    assert doc["figures"][0]["ratio"] == 1.5 and doc["figures"][0]["passed"] is True
