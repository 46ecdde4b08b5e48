"""``python -m mistersmith.bench http --quick`` runs and reports its two figures."""

from __future__ import annotations

from mistersmith.bench._cli import SUITES, Options


def test_the_http_suite_runs_quick() -> None:
    figures = SUITES["http"](Options(quick=True, pin=False))
    assert [f.key for f in figures] == ["mcp_send_command_p99", "sse_fanout_p99"]
    call, sse = figures
    assert call.baseline is not None and call.ours > 0 and call.baseline > 0
    assert call.extra["samples"] == 10 * 10
    assert sse.extra["delivered"] == sse.extra["expected"] == 20 * 3
    assert sse.ours > 0
