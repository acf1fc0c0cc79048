"""A real OTLP/HTTP receiver on 127.0.0.1: takes `POST /v1/traces` and `/v1/metrics` protobuf
bodies, decodes them with opentelemetry-proto's generated classes, and keeps what arrived."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_T = TypeVar("_T")


def value(any_value: AnyValue) -> Any:
    """An OTLP attribute value as Python."""
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    """OTLP key-value pairs as a dict."""
    return {pair.key: value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as it arrived, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a metric: its attributes and value (sum, gauge) or count (histogram)."""

    metric: str
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]


@dataclass
class OtlpReceiver:
    """The receiver; `url` is what OTEL_EXPORTER_OTLP_ENDPOINT is set to."""

    requests: list[str] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    metric_requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                answer = receiver._accept(self.path, self.headers.get("Content-Type", ""), body)
                if answer is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _accept(self, path: str, content_type: str, body: bytes) -> bytes | None:
        assert content_type == "application/x-protobuf", content_type
        with self._lock:
            self.requests.append(path)
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                for resource_spans in traces.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        self.spans.extend(ReceivedSpan(s, resource) for s in scope_spans.spans)
                answer: bytes = ExportTraceServiceResponse().SerializeToString()
                return answer
            if path == "/v1/metrics":
                self.metric_requests.append(ExportMetricsServiceRequest.FromString(body))
                answer = ExportMetricsServiceResponse().SerializeToString()
                return answer
        return None

    def points(self, name: str) -> list[ReceivedPoint]:
        """Every data point of metric `name` received so far, oldest first."""
        found: list[ReceivedPoint] = []
        with self._lock:
            requests = list(self.metric_requests)
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name == name:
                            found.extend(_points(metric, resource))
        return found

    def latest(self, name: str) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
        """The last value of each (worker, attribute set) of a cumulative metric."""
        last: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
        for point in self.points(name):
            worker = str(point.resource.get("service.instance.id"))
            last[(worker, tuple(sorted(point.attributes.items())))] = point.value
        return last

    def total(self, name: str, **match: Any) -> float:
        """The sum over workers of the latest values of `name` whose attributes include `match`."""
        return sum(
            v
            for (_, attrs), v in self.latest(name).items()
            if all(dict(attrs).get(k) == want for k, want in match.items())
        )

    def span_snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


def _points(metric: Metric, resource: dict[str, Any]) -> Iterator[ReceivedPoint]:
    kind = metric.WhichOneof("data")
    if kind in ("sum", "gauge"):
        for point in getattr(metric, kind).data_points:
            number = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
            yield ReceivedPoint(metric.name, attributes(point.attributes), number, resource)
    elif kind == "histogram":
        for point in metric.histogram.data_points:
            yield ReceivedPoint(metric.name, attributes(point.attributes), point.count, resource)


def wait_for(what: Callable[[], _T | None], timeout: float = 20.0, interval: float = 0.1) -> _T:
    """Poll `what()` until it returns something truthy; AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    result = what()
    while not result and time.monotonic() < deadline:
        time.sleep(interval)
        result = what()
    assert result, f"not seen within {timeout}s: {result!r}"
    return result
