"""``/metrics``: OpenTelemetry instruments, served in the Prometheus text format (0.0.4).

Each app owns a private ``MeterProvider`` with an in-memory reader (never the
global one, so two apps in one process never mix their numbers), and this
module renders what the reader collects as Prometheus text. (The
OpenTelemetry Prometheus exporter package is a pre-release and registers
into a process-global registry; this renderer needs neither.)

Gauges over the Runtime and the discovery hub are read at scrape time. The
request counters are plain counts on the event loop, observed at scrape time
too: an OpenTelemetry ``Counter.add`` costs about 6 us (attribute cleaning
and hashing), paid on every request; the histograms stay synchronous
instruments.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Metric, Sum
from opentelemetry.sdk.resources import Resource

__all__ = ["CONTENT_TYPE", "REFUSED_REASONS", "Metrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")

REFUSED_REASONS = ("401", "403", "413", "421", "429", "connections")
"""The ``reason`` labels of ``mistersmith_http_refused_total``: the guard's statuses, and the connection cap.
Each is counted from 0 at start, so a dashboard's rate has a series before the first refusal."""

Gauges = Callable[[], Mapping[str, float]]


class Metrics:
    """The shim's instruments. ``gauges`` names callables read at each scrape:
    each returns ``{suffix: value}`` published as ``mistersmith_<suffix>``."""

    def __init__(self, gauges: Mapping[str, Gauges] | None = None) -> None:
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(metric_readers=[self._reader], shutdown_on_exit=False,
                                       resource=Resource.create({"service.name": "mistersmith"}))
        meter = self._provider.get_meter("mistersmith.web")
        self._http: Counter[tuple[str, str]] = Counter()  # (route, status) -> requests
        self._mcp: Counter[tuple[str, str]] = Counter()  # (method, outcome) -> messages
        meter.create_observable_counter("mistersmith_http_requests_total",
                                        callbacks=[self._count(self._http, ("route", "status"))],
                                        description="HTTP requests answered, by route and status")
        self._http_s = meter.create_histogram("mistersmith_http_request_duration_seconds", unit="s",
                                              description="HTTP request duration, by route",
                                              explicit_bucket_boundaries_advisory=_BOUNDS_S)
        meter.create_observable_counter("mistersmith_mcp_requests_total",
                                        callbacks=[self._count(self._mcp, ("method", "outcome"))],
                                        description="MCP messages handled, by method and outcome")
        self._mcp_s = meter.create_histogram("mistersmith_mcp_request_duration_seconds", unit="s",
                                             description="MCP message handling time, by method",
                                             explicit_bucket_boundaries_advisory=_BOUNDS_S)
        self._refused = meter.create_counter("mistersmith_http_refused_total",
                                             description="Requests refused by the guard, by reason")
        for reason in REFUSED_REASONS:
            self._refused.add(0, {"reason": reason})
        for name, read in (gauges or {}).items():
            meter.create_observable_gauge(f"mistersmith_{name}", callbacks=[self._observe(read)],
                                          description=f"{name} (read at scrape time)")

    @staticmethod
    def _observe(read: Gauges) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            del options
            return [Observation(value, {"name": key}) for key, value in read().items()]

        return callback

    @staticmethod
    def _count(
        counts: Counter[tuple[str, str]], keys: tuple[str, str]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            del options
            return [Observation(n, dict(zip(keys, labels))) for labels, n in list(counts.items())]

        return callback

    def http_request(self, route: str, status: int, duration_s: float) -> None:
        self._http[(route, str(status))] += 1
        self._http_s.record(duration_s, {"route": route})

    def mcp_request(self, method: str, outcome: str, duration_s: float) -> None:
        self._mcp[(method, outcome)] += 1
        self._mcp_s.record(duration_s, {"method": method})

    def refused(self, reason: str) -> None:
        self._refused.add(1, {"reason": reason})

    def render(self) -> str:
        data = self._reader.get_metrics_data()
        metrics: list[Metric] = []
        if data is not None:
            for rm in data.resource_metrics:
                for sm in rm.scope_metrics:
                    metrics.extend(sm.metrics)
        return render(metrics)

    def shutdown(self) -> None:
        self._provider.shutdown()


def _labels(attributes: Mapping[str, Any] | None, extra: tuple[str, str] | None = None) -> str:
    items = [(_NAME_BAD.sub("_", str(k)), str(v)) for k, v in (attributes or {}).items()]
    if extra is not None:
        items.append(extra)
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """Prometheus text exposition of collected OpenTelemetry metrics."""
    lines: list[str] = []
    for metric in metrics:
        name = _NAME_BAD.sub("_", metric.name)
        data = metric.data
        if metric.description:
            lines.append(f"# HELP {name} {metric.description}")
        if isinstance(data, Sum):
            lines.append(f"# TYPE {name} {'counter' if data.is_monotonic else 'gauge'}")
            lines.extend(f"{name}{_labels(p.attributes)} {_num(p.value)}" for p in data.data_points)
        elif isinstance(data, Gauge):
            lines.append(f"# TYPE {name} gauge")
            lines.extend(f"{name}{_labels(p.attributes)} {_num(p.value)}" for p in data.data_points)
        elif isinstance(data, Histogram):
            lines.append(f"# TYPE {name} histogram")
            for p in data.data_points:
                cumulative = 0
                for bound, count in zip((*p.explicit_bounds, math.inf), p.bucket_counts, strict=True):
                    cumulative += count
                    lines.append(f"{name}_bucket{_labels(p.attributes, ('le', _num(bound)))} {cumulative}")
                lines.append(f"{name}_sum{_labels(p.attributes)} {_num(p.sum)}")
                lines.append(f"{name}_count{_labels(p.attributes)} {p.count}")
    return "\n".join(lines) + "\n"
