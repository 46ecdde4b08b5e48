"""/health, /info, /stats/nats, /stats/discoveries and /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _web import Served, call, http

from mistersmith.subjects import SUBJECT_TEMPLATES
from mistersmith.web.metrics import CONTENT_TYPE


async def _ok() -> Mapping[str, Any]:
    return {"status": "ok", "server": "nats://127.0.0.1:4222"}


async def _down() -> Mapping[str, Any]:
    raise ConnectionRefusedError("connection refused")


async def _degraded() -> Mapping[str, Any]:
    return {"status": "degraded", "lag_s": 3.5}


async def _nonsense() -> Mapping[str, Any]:
    return {"state": "fine?"}


def test_health_is_200_with_each_component_when_healthy(serve: Callable[..., Served]) -> None:
    served = serve(backends={"health": {"nats": _ok}})
    reply = http(served.url, "GET", "/health")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert body["node_id"] == served.runtime.node_id
    assert body["components"]["supervisor_tree"]["status"] == "ok"
    assert body["components"]["nats"] == {"status": "ok", "server": "nats://127.0.0.1:4222"}
    assert body["components"]["database"] == {"status": "disabled"}


def test_health_is_503_when_a_component_is_down(serve: Callable[..., Served]) -> None:
    served = serve(backends={"health": {"nats": _ok, "database": _down}})
    reply = http(served.url, "GET", "/health")
    assert reply.status == 503
    assert reply.json()["status"] == "down"
    assert reply.json()["components"]["database"] == {"status": "down",
                                                      "error": "ConnectionRefusedError: connection refused"}


def test_health_degraded_is_still_200_and_a_nonsense_answer_is_down(serve: Callable[..., Served]) -> None:
    degraded = serve(backends={"health": {"database": _degraded}})
    assert http(degraded.url, "GET", "/health").status == 200
    assert http(degraded.url, "GET", "/health").json()["status"] == "degraded"
    nonsense = serve(backends={"health": {"nats": _nonsense}})
    assert http(nonsense.url, "GET", "/health").status == 503


def test_health_is_503_once_the_runtime_is_closed(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.close()
    reply = http(served.url, "GET", "/health")
    assert reply.status == 503
    assert reply.json()["components"]["supervisor_tree"]["status"] == "down"
    assert call(served, "system_health")["structuredContent"]["status"] == "down"


def test_info_names_the_node_and_its_endpoints(serve: Callable[..., Served]) -> None:
    served = serve()
    info = http(served.url, "GET", "/info").json()
    assert info["name"] == "mistersmith"
    assert info["version"] == "0.1.0"
    assert info["node_id"] == served.runtime.node_id
    assert "2025-11-25" in info["protocol_versions"] and "2026-07-28" in info["protocol_versions"]
    assert {"mcp", "discoveries", "sse"} <= set(info["capabilities"])
    assert set(info["endpoints"]) == {"/mcp", "/health", "/info", "/stats/nats", "/stats/discoveries", "/cluster",
                                      "/metrics", "/discoveries/stream", "/events/stream", "/ui"}
    assert info["subjects"]["discoveries"] == "discoveries.{agent_id}.{discovery_type}"
    assert info["subjects"]["commands"] == "agents.{agent_id}.commands.{command}"
    assert info["subjects"] == dict(SUBJECT_TEMPLATES)  # one definition, however the app was built
    assert len(info["tools"]) == 16


class _Nats:
    async def nats_stats(self) -> dict[str, Any]:
        return {"connected": True, "msgs_in": 5, "msgs_out": 7, "bytes_in": 500, "bytes_out": 700,
                "reconnects": 1, "errors": 0, "rtt_ms": 0.25}


def test_stats_nats_serves_the_bridge_counters_or_503_without_it(serve: Callable[..., Served]) -> None:
    with_nats = serve(backends={"nats": _Nats()})
    reply = http(with_nats.url, "GET", "/stats/nats")
    assert reply.status == 200
    assert reply.json()["msgs_out"] == 7 and reply.json()["rtt_ms"] == 0.25
    without = serve()
    reply = http(without.url, "GET", "/stats/nats")
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "unavailable"


def test_stats_discoveries_counts_by_type_and_agent(serve: Callable[..., Served]) -> None:
    served = serve()
    for agent, kind in [("a1", "insight"), ("a1", "anomaly"), ("a2", "insight")]:
        call(served, "share_discovery", {"agent_id": agent, "agent_role": "r", "discovery_type": kind,
                                         "content": "x", "confidence": 0.5})
    stats = http(served.url, "GET", "/stats/discoveries").json()
    assert stats["total"] == 3
    assert stats["by_type"]["insight"] == 2 and stats["by_type"]["anomaly"] == 1 and stats["by_type"]["pattern"] == 0
    assert stats["by_agent"] == {"a1": 2, "a2": 1}
    assert stats["sse"] == {"active": 0, "max": 1000, "rejected": 0, "served": 0}
    assert http(serve(hub=False).url, "GET", "/stats/discoveries").status == 503


def test_metrics_serve_prometheus_text(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.spawn("echo", "m1")
    call(served, "list_agents")
    http(served.url, "GET", "/nowhere")
    reply = http(served.url, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == CONTENT_TYPE
    text = reply.body.decode()
    assert "# TYPE mistersmith_http_requests_total counter" in text
    assert 'mistersmith_http_requests_total{route="/mcp",status="200"} 1' in text
    assert 'mistersmith_http_requests_total{route="other",status="404"} 1' in text
    assert 'mistersmith_mcp_requests_total{method="tools/call",outcome="done"} 1' in text
    assert "# TYPE mistersmith_mcp_request_duration_seconds histogram" in text
    assert 'mistersmith_mcp_request_duration_seconds_bucket{method="tools/call",le="+Inf"} 1' in text
    assert 'mistersmith_runtime{name="agents"} 1' in text
    assert 'mistersmith_discoveries{name="sse_streams"} 0' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.count(" ") == 1 or "{" in line, line


def _documented_series() -> list[str]:
    """``metric{label="value"}`` for each gauge name and refusal reason docs/reference/http.md lists."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "http.md").read_text()
    section = text.split("## `GET /metrics`", 1)[1].split("\n## ", 1)[0]
    series = []
    for row in re.findall(r"^\| `(mistersmith_\w+)` \| ([^|]+) \| (.+) \|$", section, re.M):
        metric, kind, labels = row
        label = "name" if "gauge" in kind else "reason" if metric == "mistersmith_http_refused_total" else None
        if label is None:
            continue
        values = re.findall(r"`([\w]+)`", labels.split(f"`{label}`:", 1)[1])
        assert values, f"no {label} values documented for {metric}"
        series += [f'{metric}{{{label}="{value}"}}' for value in values]
    return series


def test_a_fresh_node_has_every_documented_gauge_and_refusal_reason_at_zero(serve: Callable[..., Served]) -> None:
    documented = _documented_series()
    assert 'mistersmith_runtime{name="dead_letters"}' in documented  # the table was read
    assert 'mistersmith_http_refused_total{reason="connections"}' in documented
    for served in (serve(), serve(hub=False)):
        text = http(served.url, "GET", "/metrics").body.decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert {s: values.get(s) for s in documented} == dict.fromkeys(documented, "0")
