"""A stand-in OTLP collector: an HTTP server on loopback that takes ``POST /v1/traces`` (http/protobuf)."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class Got:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Collector:
    """Collects every span exported to it; ``wait_for(predicate)`` waits, with a timeout, until one matches."""

    def __init__(self) -> None:
        self.spans: list[Got] = []
        self._cond = threading.Condition()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                got: list[Got] = []
                for resource in request.resource_spans:
                    service = next((a.value.string_value for a in resource.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource.scope_spans:
                        for s in scope.spans:
                            attrs = {a.key: a.value.string_value or a.value.int_value for a in s.attributes}
                            got.append(Got(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                           s.parent_span_id.hex(), attrs))
                with collector._cond:
                    collector.spans.extend(got)
                    collector._cond.notify_all()
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-otlp-collector", daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Any, timeout_s: float) -> Got:
        with self._cond:
            found: list[Got] = []

            def ready() -> bool:
                found[:] = [s for s in self.spans if predicate(s)]
                return bool(found)

            if not self._cond.wait_for(ready, timeout_s):
                raise AssertionError(f"no exported span matched within {timeout_s} s; got {[s.name for s in self.spans]}")
            return found[0]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
