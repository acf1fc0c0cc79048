"""OpenTelemetry end to end: `sigverify serve` (gunicorn, two workers) exporting to a real
OTLP/HTTP receiver on 127.0.0.1, `/metrics` summed over workers, and JSON logs with trace ids."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.contract import CheckedClient
from tests.e2e.conftest import service_env
from tests.otlp import OtlpReceiver, ReceivedSpan, wait_for
from tests.prometheus import prometheus_value
from tests.servers import RedisServer, RegistryServer, ServiceServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
STEPS = {
    "registry.resolve",
    "verdict_cache.get",
    "registry.discover",
    "rekor.lookup",
    "core.verify",
    "verdict.sign",
    "verdict_cache.set",
}
PROMETHEUS_NAMES = (
    "sigverify_verifications_total",
    "sigverify_verification_duration_seconds",
    "sigverify_step_duration_seconds",
    "sigverify_cache_lookups_total",
    "sigverify_upstream_errors_total",
    "sigverify_circuit_breaker_state",
    "http_server_request_duration_seconds",
)


@dataclass
class Traced:
    server: ServiceServer
    client: CheckedClient
    otlp: OtlpReceiver


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    redis_server: RedisServer,
    sigstore_local: LocalSigstore,
) -> Iterator[Traced]:
    otlp = OtlpReceiver().start()
    env = service_env(
        registry,
        redis_url=redis_server.url,
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
    )
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
        }
    )
    server = ServiceServer(tmp_path_factory.mktemp("traced"), env=env)
    try:
        with running(server), CheckedClient(base_url=server.url, timeout=30) as client:
            yield Traced(server, client, otlp)
    finally:
        otlp.stop()


class Parent:
    """A caller's trace context, sent as a W3C `traceparent` header."""

    def __init__(self) -> None:
        self.trace_id = secrets.token_hex(16)
        self.span_id = secrets.token_hex(8)

    @property
    def headers(self) -> dict[str, str]:
        return {"traceparent": f"00-{self.trace_id}-{self.span_id}-01"}


def trace_of(otlp: OtlpReceiver, trace_id: str, *names: str) -> dict[str, ReceivedSpan]:
    """The spans of one trace by name, once every one of `names` has arrived."""

    def arrived() -> dict[str, ReceivedSpan] | None:
        spans = {s.name: s for s in otlp.span_snapshot() if s.trace_id == trace_id}
        return spans if set(names) <= set(spans) else None

    return wait_for(arrived)


def verify(traced: Traced, image: str, parent: Parent | None = None) -> httpx.Response:
    return traced.client.post(
        "/v1/verify",
        json={"image": image, "policy": POLICY},
        headers=parent.headers if parent else None,
    )


def test_a_verification_is_one_trace_with_a_span_per_step(
    traced: Traced, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("telemetry/steps")
    registry_signer.sign(image)
    parent = Parent()
    response = verify(traced, image.tag_reference, parent)
    assert response.status_code == 200 and response.json()["verified"] is True

    spans = trace_of(traced.otlp, parent.trace_id, "POST /v1/verify", *STEPS)
    server = spans["POST /v1/verify"]
    assert server.parent_span_id == parent.span_id  # continues the caller's trace
    assert server.span.kind == server.span.SPAN_KIND_SERVER
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/v1/verify"
    assert server.resource["service.name"] == "sigverify"
    assert server.resource["service.instance.id"]
    verification = spans["sigverify.verify"]
    assert verification.parent_span_id == server.span_id
    assert verification.attributes["sigverify.verified"] is True
    assert verification.attributes["sigverify.reason"] == "none"
    assert verification.attributes["sigverify.cached"] is False
    assert verification.attributes["sigverify.digest"] == image.digest
    assert verification.attributes["sigverify.subject"] == image.tag_reference
    for step in STEPS:
        assert spans[step].parent_span_id == verification.span_id, step
    assert spans["rekor.lookup"].attributes["rekor.by"] == "logIndex"

    # The same question again: answered from the verdict cache, with no core or signing step.
    again = Parent()
    assert verify(traced, image.tag_reference, again).json()["cached"] is True
    cached = trace_of(traced.otlp, again.trace_id, "POST /v1/verify", "verdict_cache.get")
    assert cached["sigverify.verify"].attributes["sigverify.cached"] is True
    assert not {"core.verify", "verdict.sign", "rekor.lookup"} & set(cached)


def test_every_request_has_a_server_span_with_its_status(traced: Traced) -> None:
    health, bad, missing = Parent(), Parent(), Parent()
    assert traced.client.get("/healthz", headers=health.headers).status_code == 200
    assert traced.client.post("/v1/verify", json={}, headers=bad.headers).status_code == 400
    unknown = httpx.get(f"{traced.server.url}/no/such/path", headers=missing.headers)
    assert unknown.status_code == 404

    healthz = trace_of(traced.otlp, health.trace_id, "GET /healthz")["GET /healthz"]
    assert healthz.parent_span_id == health.span_id
    assert healthz.attributes["http.response.status_code"] == 200
    refused = trace_of(traced.otlp, bad.trace_id, "POST /v1/verify")
    assert refused["POST /v1/verify"].attributes["http.response.status_code"] == 400
    assert set(refused) == {"POST /v1/verify"}  # refused before any verification step
    # No route matched: the span is named by the method alone, as OpenTelemetry's HTTP
    # conventions say (the path would make one span name per URL).
    unrouted = trace_of(traced.otlp, missing.trace_id, "GET")["GET"]
    assert unrouted.attributes["http.response.status_code"] == 404
    assert unrouted.attributes["url.path"] == "/no/such/path"


def test_metrics_arrive_over_otlp(traced: Traced, registry_signer: RegistrySigner) -> None:
    image = registry_signer.image("telemetry/metrics")
    registry_signer.sign(image)
    assert verify(traced, image.reference).json()["cached"] is False
    assert verify(traced, image.reference).json()["cached"] is True
    unsigned = registry_signer.image("telemetry/unsigned")
    assert verify(traced, unsigned.reference).json()["verified"] is False
    missing = f"{image.name.rsplit('/', 1)[0]}/telemetry-absent:v1"
    assert verify(traced, missing).status_code == 404

    otlp = traced.otlp
    wait_for(lambda: otlp.total("sigverify.verifications", reason="registry-not-found") == 1)
    assert otlp.total("sigverify.verifications", result="error") >= 1
    assert otlp.total("sigverify.verifications", result="verified", reason="none") >= 2
    assert otlp.total("sigverify.verifications", result="failed", reason="no-signatures") >= 1
    # The same verifications by policy (inline: the request's own), mode and outcome.
    inline = {"policy": "inline", "mode": "enforce"}
    wait_for(lambda: otlp.total("sigverify.verification.duration", **inline, outcome="error") == 1)
    assert otlp.total("sigverify.verification.duration", **inline, outcome="verified") >= 2
    assert otlp.total("sigverify.verification.duration", **inline, outcome="failed") >= 1
    wait_for(lambda: otlp.total("sigverify.upstream.errors", system="registry") >= 1)
    assert otlp.total("sigverify.upstream.errors", system="registry", reason="not-found") == 1
    assert otlp.total("sigverify.cache.lookups", cache="verdict", result="hit") >= 1
    assert otlp.total("sigverify.cache.lookups", cache="verdict", result="miss") >= 2
    assert otlp.total("sigverify.cache.lookups", cache="rekor", result="miss") >= 1
    for step in STEPS:
        assert otlp.total("sigverify.step.duration", step=step) >= 1, step
    breaker = otlp.latest("sigverify.circuit_breaker.state")
    assert breaker and set(breaker.values()) == {0}  # closed, in every worker
    wait_for(
        lambda: (
            otlp.total("http.server.request.duration", **{"http.response.status_code": 404}) >= 1
        )
    )
    assert otlp.requests.count("/v1/metrics") >= 1


def test_prometheus_metrics_are_the_totals_of_all_workers(
    traced: Traced, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("telemetry/prometheus")
    registry_signer.sign(image)
    assert verify(traced, image.reference).status_code == 200
    # A series appears once it has a value: make one of each metric.
    assert verify(traced, f"{image.name}-absent:v1").status_code == 404
    labels = {
        "http_request_method": "POST",
        "http_route": "/v1/verify",
        "http_response_status_code": "400",
    }
    series = "http_server_request_duration_seconds_count"
    before = prometheus_value(traced.client.get("/metrics").text, series, **labels)
    pids: set[int] = set()
    for _ in range(12):
        # A new connection each time, so that the requests spread over both workers.
        with CheckedClient(base_url=traced.server.url, timeout=10) as fresh:
            assert fresh.post("/v1/verify", json={}).status_code == 400
    response = traced.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    # Whichever worker answered the scrape, it counted every worker's requests.
    assert prometheus_value(text, series, **labels) == before + 12
    for name in PROMETHEUS_NAMES:
        assert f"# TYPE {name} " in text, name
    assert prometheus_value(text, "sigverify_circuit_breaker_state", upstream="rekor") == 0
    assert (
        prometheus_value(text, "sigverify_verifications_total", result="verified", reason="none")
        >= 1
    )
    for line in access_lines(traced.server):
        if line.get("path") == "/v1/verify" and line.get("status") == 400:
            pids.add(line["pid"])
    assert pids  # the access log saw them; with two pids, the sum above spans workers


def log_lines(server: ServiceServer) -> list[dict[str, Any]]:
    """Every line the service wrote, each parsed as JSON (a line that is not fails the test)."""
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def access_lines(server: ServiceServer) -> list[dict[str, Any]]:
    return [line for line in log_lines(server) if line["logger"] == "gunicorn.access"]


def test_logs_are_json_and_carry_the_trace_ids(
    traced: Traced, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("telemetry/logs")
    registry_signer.sign(image)
    parent = Parent()
    assert verify(traced, image.reference, parent).json()["verified"] is True
    spans = trace_of(traced.otlp, parent.trace_id, "POST /v1/verify", "sigverify.verify")

    def request_logged() -> list[dict[str, Any]] | None:
        """This request's lines, once both (access log and outcome) are written."""
        lines = [x for x in log_lines(traced.server) if x.get("trace_id") == parent.trace_id]
        return lines if len(lines) >= 2 else None

    lines = wait_for(request_logged)
    (access,) = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert access["method"] == "POST" and access["path"] == "/v1/verify"
    assert access["status"] == 200 and access["duration_ms"] > 0
    assert access["span_id"] == spans["POST /v1/verify"].span_id
    (outcome,) = [line for line in lines if line["logger"] == "service.verification"]
    assert outcome["level"] == "INFO" and "passed" in outcome["message"]
    assert outcome["span_id"] == spans["sigverify.verify"].span_id
    everything = log_lines(traced.server)
    assert any(
        line["logger"] == "gunicorn.error" and "Booting worker" in line["message"]
        for line in everything
    )
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in everything)
