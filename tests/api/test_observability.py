"""A server span per request, in process; `GET /metrics` as the contract documents it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service.app import create_app
from service.config import Settings
from service.state import Services
from service.telemetry import Telemetry
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient
from tests.prometheus import prometheus_value


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    client.get("/healthz")
    response = client.get("/metrics")  # checked against openapi.yaml
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    count = prometheus_value(
        response.text,
        "http_server_request_duration_seconds_count",
        http_request_method="GET",
        http_route="/healthz",
        http_response_status_code="200",
    )
    assert count == 1
    assert "# TYPE sigverify_circuit_breaker_state gauge" in response.text


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, rekor_url=NO_REKOR, metrics=False))
    transport = httpx.WSGITransport(app=app)
    with CheckedClient(transport=transport, base_url="http://sigverify") as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert "SIGVERIFY_METRICS" in response.json()["detail"]


@pytest.fixture
def traced_app(tmp_path: Path) -> Iterator[tuple[Flask, InMemorySpanExporter]]:
    app = create_app(Settings(data_dir=tmp_path, rekor_url=NO_REKOR))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    services = app.extensions["sigverify"]
    assert isinstance(services, Services)
    services.telemetry = Telemetry(tracer_provider=provider)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    yield app, spans
    provider.shutdown()


def test_a_request_continues_the_callers_trace(
    traced_app: tuple[Flask, InMemorySpanExporter],
) -> None:
    app, spans = traced_app
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app.test_client().get("/healthz", headers={"traceparent": parent})
    (span,) = spans.get_finished_spans()
    assert span.name == "GET /healthz"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200


def test_a_failed_request_is_an_error_span_and_leaves_no_context_behind(
    traced_app: tuple[Flask, InMemorySpanExporter],
) -> None:
    app, spans = traced_app
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/healthz").status_code == 200
    failed, after = spans.get_finished_spans()
    assert failed.name == "GET /boom"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["http.response.status_code"] == 500
    # The next request in this thread starts a trace of its own, and none is left current.
    assert after.parent is None
    assert after.context.trace_id != failed.context.trace_id
    assert not trace.get_current_span().get_span_context().is_valid
