"""Telemetry: which exporters the OTEL_* variables turn on, spans and metrics as recorded, and
Prometheus values summed over worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from service import telemetry
from service.config import SettingsError
from service.telemetry import Exporters, Telemetry, exporters_from_env, verdict_reason
from tests.prometheus import prometheus_value

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Exporters()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, Exporters(("otlp",), ("otlp",))),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT}, Exporters(traces=("otlp",))),
        ({"OTEL_METRICS_EXPORTER": "console"}, Exporters(metrics=("console",))),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
            Exporters(metrics=("otlp",)),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"},
            Exporters(sdk_disabled=True),
        ),
    ],
)
def test_exporters_are_off_unless_asked_for(env: dict[str, str], expected: Exporters) -> None:
    assert exporters_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "otlp,prometheus"}, "OTEL_METRICS_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_unusable_otel_settings_are_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        exporters_from_env(env)


@pytest.mark.parametrize(
    ("env", "why"),
    [
        # Each of these was accepted: the SDK logged and ignored it, or exported nowhere ...
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "expected an http(s)://host"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "grpc://collector"}, "expected an http(s)"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "must be always_on"),
        ({"OTEL_TRACES_SAMPLER_ARG": "half"}, "from 0 to 1"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "1m"}, "positive number"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, "positive number"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "gzip, deflate, none"),
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "no such file"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "not key=value"),
        # ... or raised inside every gunicorn worker, which gunicorn restarted for ever.
        ({"OTEL_BSP_SCHEDULE_DELAY": "5s"}, "positive integer"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "positive integer"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"}, "not be above OTEL_BSP_MAX_QUEUE_SIZE"),
    ],
)
def test_unusable_otel_values_are_one_line_errors(env: dict[str, str], why: str) -> None:
    ((name, _value),) = env.items()
    with pytest.raises(SettingsError) as refused:
        exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, **env})
    assert str(refused.value).startswith(name) and why in str(refused.value)
    assert "\n" not in str(refused.value)
    # What the SDK reads the same way stays accepted, and nothing is checked when it is off.
    exporters_from_env({"OTEL_SDK_DISABLED": "true", **env})


def test_usable_otel_values_stay_accepted() -> None:
    exporters_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com:4318/otlp",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Basic%20dXNlcg==,x-team=platform",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=platform",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1024",
            "OTEL_METRIC_EXPORT_INTERVAL": "15000",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )


def test_otlp_headers_stay_out_of_errors() -> None:
    """Headers carry collector tokens: a bad one is named by position, never shown."""
    with pytest.raises(SettingsError) as refused:
        exporters_from_env({"OTEL_EXPORTER_OTLP_HEADERS": "x-token=ok,Bearer s3cret-token"})
    assert "item 2" in str(refused.value) and "s3cret" not in str(refused.value)


def test_serve_refuses_an_unusable_otel_setting_before_starting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGVERIFY_", "OTEL_"))}
    env.update({"SIGVERIFY_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    result = subprocess.run(
        [str(Path(sys.executable).parent / "sigverify"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in result.stderr


@pytest.fixture
def recorded() -> Iterator[tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield (
        Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider),
        spans,
        reader,
    )
    tracer_provider.shutdown()
    meter_provider.shutdown()


def otel_points(reader: InMemoryMetricReader, name: str) -> dict[tuple[Any, ...], Any]:
    """The data points of metric `name` by their sorted attributes."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        tuple(sorted((point.attributes or {}).items())): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    }


def test_steps_are_child_spans_with_their_time_recorded(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    tele, spans, reader = recorded
    with tele.span("sigverify.verify"):
        assert tele.timed("registry.resolve", lambda: 42, {"a": "b"}) == 42
        with pytest.raises(RuntimeError), tele.step("core.verify"):
            raise RuntimeError("boom")
    finished = {s.name: s for s in spans.get_finished_spans()}
    parent = finished["sigverify.verify"]
    for name in ("registry.resolve", "core.verify"):
        context = finished[name].parent
        assert context is not None and context.span_id == parent.context.span_id
    assert finished["registry.resolve"].attributes == {"a": "b"}
    assert finished["core.verify"].status.status_code is StatusCode.ERROR
    steps = otel_points(reader, "sigverify.step.duration")
    assert steps[(("step", "core.verify"),)].count == 1  # failed steps are timed too
    assert steps[(("step", "registry.resolve"),)].count == 1
    text = tele.prometheus_text().decode()
    assert prometheus_value(text, "sigverify_step_duration_seconds_count", step="core.verify") == 1


def test_counters_reach_both_otlp_and_prometheus(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    tele, _, reader = recorded
    tele.verification("failed", "identity")
    tele.verification("failed", "identity")
    tele.cache_event("hit", "verdict")
    tele.cache_event("miss", "rekor")
    tele.cache_event("read-error", "verdict")
    state = {"now": "closed"}
    tele.watch_breaker("rekor", lambda: state["now"])
    state["now"] = "open"
    verifications = otel_points(reader, "sigverify.verifications")
    assert verifications[(("reason", "identity"), ("result", "failed"))].value == 2
    lookups = otel_points(reader, "sigverify.cache.lookups")
    assert lookups[(("cache", "verdict"), ("result", "hit"))].value == 1
    assert lookups[(("cache", "rekor"), ("result", "miss"))].value == 1
    errors = otel_points(reader, "sigverify.upstream.errors")
    assert errors[(("reason", "read-error"), ("system", "redis"))].value == 1
    # OTLP reads the breaker when it collects; Prometheus when it is scraped.
    assert (
        otel_points(reader, "sigverify.circuit_breaker.state")[(("upstream", "rekor"),)].value == 2
    )
    text = tele.prometheus_text().decode()
    assert prometheus_value(text, "sigverify_circuit_breaker_state", upstream="rekor") == 2
    assert (
        prometheus_value(text, "sigverify_verifications_total", result="failed", reason="identity")
        == 2
    )
    assert (
        prometheus_value(
            text, "sigverify_upstream_errors_total", system="redis", reason="read-error"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        ({"verified": True, "signatures": []}, "none"),
        ({"verified": False, "signatures": []}, "no-signatures"),
        (
            {
                "verified": False,
                "signatures": [
                    {"checks": [{"name": "signature", "passed": True}]},
                    {
                        "checks": [
                            {"name": "sct", "passed": True},
                            {"name": "identity", "passed": False},
                        ]
                    },
                ],
            },
            "identity",
        ),
        (
            {"verified": False, "signatures": [{"checks": [{"name": "x", "passed": True}]}]},
            "policy",
        ),
    ],
)
def test_verdict_reason(verdict: dict[str, Any], reason: str) -> None:
    assert verdict_reason(verdict) == reason


def test_free_slot_is_the_lowest_one_no_live_worker_holds() -> None:
    assert telemetry.free_slot([]) == 0
    assert telemetry.free_slot([0, 2, None]) == 1
    assert telemetry.free_slot([1, 0]) == 2


WORKER = textwrap.dedent(
    """
    import sys
    from service import telemetry
    slot, count, breaker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    telemetry.use_metrics_slot(slot)
    tele = telemetry.Telemetry(multiprocess_dir=telemetry.metrics_dir())
    for _ in range(count):
        tele.verification("verified", "none")
    tele.watch_breaker("rekor", lambda: breaker)
    """
)


def run_worker(directory: Path, slot: int, count: int, breaker: str) -> None:
    """A process that records as a gunicorn worker in `slot` does, then exits."""
    env = {**os.environ, telemetry.MULTIPROC_ENV: str(directory)}
    subprocess.run(
        [sys.executable, "-c", WORKER, str(slot), str(count), breaker],
        env=env,
        check=True,
        timeout=60,
    )


def test_prometheus_values_are_summed_over_workers_and_survive_replacement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(tmp_path, 0, 3, "closed")
    run_worker(tmp_path, 1, 4, "open")
    # Slot 0's worker was replaced (max_requests): the new one continues its counters.
    run_worker(tmp_path, 0, 2, "closed")
    scrape = Telemetry(multiprocess_dir=str(tmp_path))
    text = scrape.prometheus_text().decode()
    assert (
        prometheus_value(text, "sigverify_verifications_total", result="verified", reason="none")
        == 9
    )
    # The breaker gauge is the worst live worker's.
    assert prometheus_value(text, "sigverify_circuit_breaker_state", upstream="rekor") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_slot0.db",
        "counter_slot1.db",
        "gauge_livemax_slot0.db",
        "gauge_livemax_slot1.db",
        # The trust root's timestamps: the stalest worker's.
        "gauge_livemin_slot0.db",
        "gauge_livemin_slot1.db",
    ]
    monkeypatch.setenv(telemetry.MULTIPROC_ENV, str(tmp_path))
    telemetry.release_metrics_slot(1)  # slot 1's worker is gone and not replaced
    text = scrape.prometheus_text().decode()
    assert prometheus_value(text, "sigverify_circuit_breaker_state", upstream="rekor") == 0
    assert (
        prometheus_value(text, "sigverify_verifications_total", result="verified", reason="none")
        == 9
    )
