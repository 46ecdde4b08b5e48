"""Traces across every hop: OpenTelemetry spans for the node's own work. Off unless configured.

``configure(exporter)`` turns tracing on: ``"console"`` prints spans (local
debugging), ``"otlp"`` (or any ``OTEL_EXPORTER_OTLP_ENDPOINT``/
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` in the environment) exports them with
the OTLP http/protobuf exporter, configured by the standard ``OTEL_*``
variables. ``configure_exporter(exporter)`` takes any span exporter (tests
pass an in-memory one). Off (the default), every helper here returns at once
and no span is made: ``enabled`` is the one flag the hot paths read.

The spans (names are stable; attributes use the ``mistersmith.`` prefix):

- ``HTTP {method} {path}`` (server), and under it ``mcp {method}`` and
  ``mcp.tool {name}``;
- ``nats.receive {subject}`` (consumer) for a command the bridge takes, and
  ``nats.reply`` under it; a request we send (``AgentClient``, the CLI, a
  forward) carries the current context in its ``traceparent`` header;
- ``agent.command {command}`` (from queued to finished, with a ``started``
  event, ``mistersmith.agent_id``, ``.kind``, ``.command``, ``.outcome``): the
  current span inside the handler, so the user's own spans, and an
  instrumented httpx or LLM client's, nest under it;
- ``journal.commit`` (the wait for an event to be durable), ``state.commit``
  and ``state.effect``.

The W3C ``traceparent`` comes in from HTTP headers, MCP's
``_meta.traceparent`` and NATS headers (``extract``). A supervision event
records the trace id of the span current when it happened (``current_trace_id``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "EXPORTERS",
    "OFF",
    "Span",
    "SpanKind",
    "attach",
    "configure",
    "configure_exporter",
    "context_of",
    "current_context",
    "current_trace_id",
    "detach",
    "disable",
    "enabled",
    "extract",
    "finish",
    "inject",
    "resumed",
    "shutdown",
    "span",
    "start",
    "wanted",
]

EXPORTERS: tuple[str, ...] = ("none", "console", "otlp")
"""What ``tracing.exporter`` may name (``none``: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set)."""

enabled = False
"""Whether spans are made at all; read on the hot paths (``mistersmith.tracing.enabled``)."""

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_exporters: set[int] = set()
_QUEUE = 65_536
_OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(exporter: str, environ: Mapping[str, str] | None = None) -> str:
    """Which exporter ``exporter`` and the environment ask for: ``none``, ``console`` or ``otlp``."""
    env = os.environ if environ is None else environ
    if exporter == "none" and any(env.get(v) for v in _OTLP_VARIABLES):
        return "otlp"
    return exporter


def configure(exporter: str, *, service_name: str = "mistersmith") -> bool:
    """Turn tracing on as ``exporter`` (and the environment) say; False if it stays off."""
    which = wanted(exporter)
    if which == "none":
        return False
    if which == "console":
        return configure_exporter(ConsoleSpanExporter(), service_name=service_name, batch=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return configure_exporter(OTLPSpanExporter(), service_name=service_name)


def configure_exporter(exporter: SpanExporter, *, service_name: str = "mistersmith", batch: bool = True) -> bool:
    """Turn tracing on with ``exporter`` (an in-memory one in tests: ``batch=False`` exports each span
    as it ends). The provider becomes the global one unless the program set its own, which is then used."""
    global enabled, _tracer, _provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the program's own (or ours, from before): add to it
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
            "OTEL_SERVICE_NAME", service_name)}))
        trace.set_tracer_provider(provider)
    if id(exporter) not in _exporters:  # configured again with the same exporter (a test): once is enough
        _exporters.add(id(exporter))
        provider.add_span_processor(_batching(exporter) if batch else SimpleSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("mistersmith")
    enabled = True
    return True


def disable() -> None:
    """Stop making spans (the provider and its exporters stay, for a later ``configure``)."""
    global enabled, _tracer
    enabled, _tracer = False, None


def _batching(exporter: SpanExporter) -> BatchSpanProcessor:
    """The SDK's batch processor, with a queue for a busy node (a thousand commands a second make three
    thousand spans: the SDK's default 2,048 would drop them); ``OTEL_BSP_*`` still decide when set."""
    env = os.environ
    return BatchSpanProcessor(exporter, max_queue_size=int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", _QUEUE)),
                              schedule_delay_millis=float(env.get("OTEL_BSP_SCHEDULE_DELAY", 1000)),
                              max_export_batch_size=int(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048)))


def shutdown() -> None:
    """Flush what is buffered (at a node's stop); tracing stays as it was configured."""
    if _provider is not None:
        _provider.force_flush()


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The trace context of a ``traceparent`` (and ``tracestate``) in ``carrier``; None if none is valid."""
    if not enabled or not carrier or "traceparent" not in carrier:
        return None
    ctx = _propagator.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def inject(carrier: MutableMapping[str, str]) -> None:
    """Put the current trace context in ``carrier`` as ``traceparent``/``tracestate`` (nothing when off)."""
    if enabled:
        _propagator.inject(carrier)


def start(name: str, *, parent: otel_context.Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
          attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A started span, child of ``parent`` (default: the current context); None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def finish(span_: Span | None, outcome: str | None = None, error: BaseException | None = None) -> None:
    """End ``span_`` with its ``mistersmith.outcome`` (``ok`` or an error code) and, on failure, an error status."""
    if span_ is None:
        return
    if outcome is not None:
        span_.set_attribute("mistersmith.outcome", outcome)
    if error is not None:
        span_.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span_.end()


OFF: AbstractContextManager[None] = nullcontext()
"""What ``span`` returns while tracing is off. A hot path may write ``with tracing.span(...) if
tracing.enabled else tracing.OFF:`` so that it builds no name or attributes for a span it will not make."""


def span(name: str, *, parent: otel_context.Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
         attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span | None]:
    """A span that is current inside the block; an exception marks it as an error. When tracing is
    off, a shared do-nothing context (``None`` in the block), so a hot path needs no check of its own."""
    if _tracer is None:
        return OFF
    return _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def attach(span_: Span | None) -> object | None:
    """Make ``span_`` current in this thread (or task) until ``detach``; None when there is none."""
    if span_ is None:
        return None
    return otel_context.attach(trace.set_span_in_context(span_))


def detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def context_of(span_: Span) -> otel_context.Context:
    """A context whose current span is ``span_`` (the parent of spans made in another task later)."""
    return trace.set_span_in_context(span_)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the span current here, or None."""
    if not enabled:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_context() -> otel_context.Context | None:
    """The whole current context, to resume elsewhere (another thread); None when off."""
    return otel_context.get_current() if enabled else None


@contextmanager
def resumed(ctx: otel_context.Context | None) -> Iterator[None]:
    """Run the block in ``ctx`` (a context taken with ``current_context`` in another thread)."""
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
