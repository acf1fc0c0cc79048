"""OpenTelemetry traces and metrics, and the same metrics as Prometheus text for `/metrics`.

Each gunicorn worker starts its own OpenTelemetry providers in `post_fork` (`start_worker`):
the batch span processor and the periodic metric reader run threads that do not survive a fork.
The OTLP/HTTP exporters are configured by the standard `OTEL_*` variables and are off unless
`OTEL_EXPORTER_OTLP_ENDPOINT` (or a per-signal endpoint) or `OTEL_TRACES_EXPORTER` /
`OTEL_METRICS_EXPORTER` is set, so nothing leaves the process by default. Spans are made (and
their ids logged) even with no exporter.

Every metric is recorded twice, through one `Telemetry` call: into OpenTelemetry instruments
(exported over OTLP per worker, with `service.instance.id` telling workers apart) and into
prometheus_client metrics for `/metrics`. Under gunicorn the Prometheus values live in memory-
mapped files in one directory per server (prometheus_client's multiprocess mode), so whichever
worker answers a scrape reports the totals of all of them. Files are named by worker *slot*, not
pid: a worker that replaces another (`max_requests`, a crash) takes over its slot and continues
its counters, so totals never go back and the directory holds one set of files per worker.

Metrics (OTLP name; the Prometheus name has `_` for `.`, `_seconds` for durations, `_total` for
counters):

- `sigverify.verifications` {result, reason}: verifications answered; result `verified`,
  `failed` or `error`, reason the first failed check (`identity`, `no-signatures` ...) or the
  error (`registry-timeout`, `rekor-unavailable` ...);
- `sigverify.verification.duration` {policy, mode, outcome}: seconds per verification answered
  (its count is the verifications), by named policy (`inline` for a request's own policy),
  mode (`enforce`, `audit`) and outcome (`verified`, `failed`, `error`): a dashboard's audit
  would-be denials (`audit`, `failed`) beside enforced denials. Only names from the policy file
  become labels, so the series are bounded by policies x 2 x 3;
- `sigverify.step.duration` {step}: seconds per step (`registry.resolve`, `verdict_cache.get`,
  `registry.discover`, `rekor.lookup`, `core.verify`, `verdict.sign`, `verdict_cache.set`);
- `sigverify.cache.lookups` {cache, result}: reads per cache (`verdict`, `rekor`), hit or miss,
  and writes refused by the size cap (`too-large`);
- `sigverify.upstream.errors` {system, reason}: registry, Rekor and Redis failures;
- `sigverify.circuit_breaker.state` {upstream}: 0 closed, 1 half-open, 2 open;
- `sigverify.trust_root.info` {source, version, digest}: 1 for each default trust root a live
  worker uses (`source` embedded, tuf or file; `version` TUF's targets version, or empty), 0 for
  one no longer used; two at 1 means the workers have not all taken up a refresh yet;
- `sigverify.trust_root.refresh_timestamp`, `sigverify.trust_root.expiry_timestamp`: when TUF
  last confirmed the root in use, and when that confirmation's metadata expires (Unix time;
  the stalest worker's; 0: never, an embedded or file root);
- `sigverify.trust_root.refreshes` {result}: TUF refreshes, `updated`, `unchanged` or `failed`
  (the failure's reason is in `sigverify.upstream.errors` {system="tuf"});
- `http.server.request.duration` {http.request.method, http.route, http.response.status_code}.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import prometheus_client
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from prometheus_client import multiprocess, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from service.config import SettingsError, check_url

log = logging.getLogger(__name__)

SCOPE = "sigverify"
VERSION = importlib.metadata.version("sigverify")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Seconds; one set for every histogram, in OTLP and Prometheus alike.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
TRACE_ID_ENV = "sigverify.trace_id"  # WSGI environ keys the access log reads
SPAN_ID_ENV = "sigverify.span_id"

Result = Literal["verified", "failed", "error"]
_T = TypeVar("_T")


# -- exporters from the standard OTEL_* variables ----------------------------------------------


@dataclass(frozen=True)
class Exporters:
    """Which exporters the `OTEL_*` environment asks for; empty tuples export nothing."""

    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    sdk_disabled: bool = False


_SUPPORTED = {"otlp", "console", "none"}


def _choose(environ: Mapping[str, str], signal: str) -> tuple[str, ...]:
    explicit = environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
    if explicit:
        names = tuple(n.strip() for n in explicit.split(",") if n.strip())
        unknown = sorted(set(names) - _SUPPORTED)
        if unknown:
            raise SettingsError(
                f"OTEL_{signal}_EXPORTER={explicit!r}: {unknown[0]} is not available "
                "(otlp, console or none)"
            )
        return tuple(n for n in names if n != "none")
    # Unlike the SDK's default (otlp to localhost), only an endpoint someone set turns export on.
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
    )
    return ("otlp",) if endpoint else ()


def _positive_int(value: str) -> object:
    if not value.strip().isdigit() or int(value) <= 0:
        raise ValueError("must be a positive integer")
    return int(value)


def _non_negative_int(value: str) -> object:
    if not value.strip().isdigit():
        raise ValueError("must be a non-negative integer")
    return int(value)


def _positive_number(value: str) -> object:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise ValueError("must be a positive number")
    return number


def _pairs(value: str) -> object:
    """`key=value` items, comma-separated (headers, resource attributes); values URL-encoded."""
    for n, item in enumerate(value.split(","), start=1):
        key, sep, _ = item.partition("=")
        if item.strip() and (not sep or not key.strip()):
            raise ValueError(f"item {n} is not key=value")  # the value may be a secret
    return value


def _file(value: str) -> object:
    if not os.path.isfile(value):
        raise ValueError("no such file")
    return value


def _one_of(*choices: str) -> Callable[[str], object]:
    def parse(value: str) -> object:
        if value.strip().lower() not in choices:
            raise ValueError("must be " + ", ".join(choices))
        return value

    return parse


_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_SAMPLERS = ("always_on", "always_off", "parentbased_always_on", "parentbased_always_off")


def _ratio(value: str) -> object:
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1:
        raise ValueError("must be a number from 0 to 1")
    return rate


def _otel_checks() -> dict[str, Callable[[str], object]]:
    """The `OTEL_*` variables the SDK reads here, each with what makes its value usable. The
    SDK itself logs and ignores most bad values, or raises inside a worker (batch sizes), which
    gunicorn then restarts for ever: `sigverify serve` checks them before it forks."""
    checks: dict[str, Callable[[str], object]] = {
        "OTEL_TRACES_SAMPLER": _one_of(*_SAMPLERS, *_RATIO_SAMPLERS),
        "OTEL_TRACES_SAMPLER_ARG": _ratio,
        "OTEL_RESOURCE_ATTRIBUTES": _pairs,
        "OTEL_BSP_SCHEDULE_DELAY": _positive_int,
        "OTEL_BSP_EXPORT_TIMEOUT": _non_negative_int,
        "OTEL_BSP_MAX_QUEUE_SIZE": _positive_int,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": _positive_int,
        "OTEL_METRIC_EXPORT_INTERVAL": _positive_number,
        "OTEL_METRIC_EXPORT_TIMEOUT": _positive_number,
    }
    for signal in ("", "TRACES_", "METRICS_"):
        prefix = f"OTEL_EXPORTER_OTLP_{signal}"
        checks[prefix + "ENDPOINT"] = lambda v: check_url(v, "OTLP endpoint")
        checks[prefix + "HEADERS"] = _pairs
        checks[prefix + "TIMEOUT"] = _positive_number
        checks[prefix + "COMPRESSION"] = _one_of("gzip", "deflate", "none")
        checks[prefix + "CERTIFICATE"] = _file
        checks[prefix + "CLIENT_KEY"] = _file
        checks[prefix + "CLIENT_CERTIFICATE"] = _file
    return checks


def check_otel_environment(env: Mapping[str, str]) -> None:
    """SettingsError, naming the variable, for an `OTEL_*` value the SDK could not use."""
    for name, parse in _otel_checks().items():
        value = env.get(name, "").strip()
        if not value:
            continue
        try:
            parse(value)
        except ValueError as exc:
            shown = name if name.endswith("HEADERS") else f"{name}={value!r}"  # may hold tokens
            raise SettingsError(f"{shown}: {exc}") from None
    queue = env.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip() or "2048"
    batch = env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip() or "512"
    if int(batch) > int(queue):
        raise SettingsError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch!r}: must not be above "
            f"OTEL_BSP_MAX_QUEUE_SIZE ({queue})"
        )


def exporters_from_env(environ: Mapping[str, str] | None = None) -> Exporters:
    """The exporters `environ` (default: the process's) asks for; SettingsError when unusable."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Exporters(sdk_disabled=True)
    check_otel_environment(env)
    for name in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        protocol = env.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise SettingsError(f"{name}={protocol!r}: only http/protobuf is available")
    return Exporters(traces=_choose(env, "TRACES"), metrics=_choose(env, "METRICS"))


def _resource() -> Resource:
    """`service.*` from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else ours."""
    resource = Resource.create(
        {
            "service.version": VERSION,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SCOPE}))
    return resource


def start_worker(environ: Mapping[str, str] | None = None) -> Exporters:
    """Install this process's tracer and meter providers (gunicorn's `post_fork`).

    Spans are always made, so logs carry trace ids; exporters only as `exporters_from_env`
    says. Metrics go to OpenTelemetry only when a metrics exporter is configured.
    """
    chosen = exporters_from_env(environ)
    if chosen.sdk_disabled:
        return chosen
    resource = _resource()
    tracer_provider = TracerProvider(resource=resource)
    for name in chosen.traces:
        tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))
    trace.set_tracer_provider(tracer_provider)
    if chosen.metrics:
        readers = [PeriodicExportingMetricReader(_metric_exporter(n)) for n in chosen.metrics]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return chosen


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter,
    )

    return OTLPMetricExporter()


def shutdown_worker() -> None:
    """Flush and stop this process's providers (gunicorn's `worker_exit`)."""
    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, TracerProvider):
        tracer_provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()


# -- Prometheus across gunicorn workers --------------------------------------------------------


def prepare_metrics_dir() -> str:
    """A fresh directory for this server's Prometheus files, named in PROMETHEUS_MULTIPROC_DIR.

    Called once in gunicorn's master before it forks; the workers inherit the variable.
    """
    path = tempfile.mkdtemp(prefix="sigverify-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def metrics_dir() -> str | None:
    """The directory `prepare_metrics_dir` named, in a process gunicorn started; else None."""
    return os.environ.get(MULTIPROC_ENV) or None


def remove_metrics_dir(path: str) -> None:
    """Delete the directory `prepare_metrics_dir` made (gunicorn's `on_exit`)."""
    shutil.rmtree(path, ignore_errors=True)


def free_slot(taken: Iterable[int | None]) -> int:
    """The lowest worker slot no live worker holds (gunicorn's `pre_fork`, in the master)."""
    used = set(taken)
    return next(n for n in itertools.count() if n not in used)


def use_metrics_slot(slot: int) -> None:
    """Write this process's Prometheus values to the files of `slot` (gunicorn's `post_fork`).

    The master hands out slots so that no two live workers share one; a new worker continues
    the values its slot's previous holder left.
    """
    values.ValueClass = values.MultiProcessValue(lambda: f"slot{slot}")  # type: ignore[no-untyped-call]


def release_metrics_slot(slot: int) -> None:
    """Drop a dead worker's gauges (gunicorn's `child_exit`); its counters stay in the totals."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(f"slot{slot}", path)  # type: ignore[no-untyped-call]


# -- what the service records ------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str  # OpenTelemetry's; Prometheus's is derived as OpenTelemetry's exporters do
    kind: Literal["counter", "histogram", "gauge"]
    unit: str
    description: str
    attributes: tuple[str, ...]
    # How a gauge's values from several workers combine (prometheus_client's multiprocess mode).
    combine: Literal["livemax", "livemin"] = "livemax"

    @property
    def prometheus_name(self) -> str:
        base = self.name.replace(".", "_")
        return base + "_seconds" if self.unit == "s" else base

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(a.replace(".", "_") for a in self.attributes)


VERIFICATIONS = _Spec(
    "sigverify.verifications",
    "counter",
    "{verification}",
    "Verifications answered, by result (verified, failed, error) and reason.",
    ("result", "reason"),
)
VERIFICATION_DURATION = _Spec(
    "sigverify.verification.duration",
    "histogram",
    "s",
    "Verifications answered, by named policy (inline: a request's own), mode and outcome.",
    ("policy", "mode", "outcome"),
)
STEP_DURATION = _Spec(
    "sigverify.step.duration",
    "histogram",
    "s",
    "Time spent in each step of a verification.",
    ("step",),
)
CACHE_LOOKUPS = _Spec(
    "sigverify.cache.lookups",
    "counter",
    "{lookup}",
    "Cache reads by cache (verdict, rekor) and result (hit, miss); too-large: writes refused.",
    ("cache", "result"),
)
UPSTREAM_ERRORS = _Spec(
    "sigverify.upstream.errors",
    "counter",
    "{error}",
    "Failures of the registry, Rekor or Redis, by system and reason.",
    ("system", "reason"),
)
BREAKER_STATE = _Spec(
    "sigverify.circuit_breaker.state",
    "gauge",
    "1",
    "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open (the worst worker's).",
    ("upstream",),
)
TRUST_ROOT_INFO = _Spec(
    "sigverify.trust_root.info",
    "gauge",
    "1",
    "The default trust root in use: 1 per (source, version, digest) a live worker uses.",
    ("source", "version", "digest"),
)
TRUST_ROOT_REFRESHED = _Spec(
    "sigverify.trust_root.refresh_timestamp",
    "gauge",
    "s",
    "When TUF last confirmed the trust root in use, Unix time (the stalest worker's; 0 never).",
    (),
    combine="livemin",
)
TRUST_ROOT_EXPIRES = _Spec(
    "sigverify.trust_root.expiry_timestamp",
    "gauge",
    "s",
    "When the TUF metadata vouching for the trust root in use expires, Unix time (0 never).",
    (),
    combine="livemin",
)
TRUST_ROOT_REFRESHES = _Spec(
    "sigverify.trust_root.refreshes",
    "counter",
    "{refresh}",
    "TUF refreshes of the default trust root, by result (updated, unchanged, failed).",
    ("result",),
)
HTTP_DURATION = _Spec(
    "http.server.request.duration",
    "histogram",
    "s",
    "HTTP requests served, by method, route and status.",
    ("http.request.method", "http.route", "http.response.status_code"),
)
SPECS = (
    VERIFICATIONS,
    VERIFICATION_DURATION,
    STEP_DURATION,
    CACHE_LOOKUPS,
    UPSTREAM_ERRORS,
    BREAKER_STATE,
    TRUST_ROOT_INFO,
    TRUST_ROOT_REFRESHED,
    TRUST_ROOT_EXPIRES,
    TRUST_ROOT_REFRESHES,
    HTTP_DURATION,
)


@dataclass(frozen=True)
class TrustRootReading:
    """What the trust-root metrics report about the default root in use."""

    source: str
    version: str
    digest: str
    refreshed_at: float = 0.0  # Unix time; 0: never
    expires_at: float = 0.0


class Telemetry:
    """One worker's tracer and metrics. Recording is cheap, thread-safe and never raises.

    Providers default to the global ones (no-op until `start_worker` installs the SDK's).
    `multiprocess_dir` set: `/metrics` reports every worker's values found there.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        self.multiprocess_dir = multiprocess_dir
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self._breakers: dict[str, Callable[[], str]] = {}
        self._trust_root: Callable[[], TrustRootReading] | None = None
        self._trust_root_labels: tuple[str, str, str] | None = None
        self._verifications = meter.create_counter(
            VERIFICATIONS.name, VERIFICATIONS.unit, VERIFICATIONS.description
        )
        self._verification_time = meter.create_histogram(
            VERIFICATION_DURATION.name,
            VERIFICATION_DURATION.unit,
            VERIFICATION_DURATION.description,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self._steps = meter.create_histogram(
            STEP_DURATION.name,
            STEP_DURATION.unit,
            STEP_DURATION.description,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self._cache = meter.create_counter(
            CACHE_LOOKUPS.name, CACHE_LOOKUPS.unit, CACHE_LOOKUPS.description
        )
        self._upstream = meter.create_counter(
            UPSTREAM_ERRORS.name, UPSTREAM_ERRORS.unit, UPSTREAM_ERRORS.description
        )
        meter.create_observable_gauge(
            BREAKER_STATE.name,
            [self._observe_breakers],
            BREAKER_STATE.unit,
            BREAKER_STATE.description,
        )
        meter.create_observable_gauge(
            TRUST_ROOT_INFO.name,
            [self._observe_trust_root],
            TRUST_ROOT_INFO.unit,
            TRUST_ROOT_INFO.description,
        )
        meter.create_observable_gauge(
            TRUST_ROOT_REFRESHED.name,
            [lambda _o: self._observe_trust_time("refreshed_at")],
            TRUST_ROOT_REFRESHED.unit,
            TRUST_ROOT_REFRESHED.description,
        )
        meter.create_observable_gauge(
            TRUST_ROOT_EXPIRES.name,
            [lambda _o: self._observe_trust_time("expires_at")],
            TRUST_ROOT_EXPIRES.unit,
            TRUST_ROOT_EXPIRES.description,
        )
        self._refreshes = meter.create_counter(
            TRUST_ROOT_REFRESHES.name, TRUST_ROOT_REFRESHES.unit, TRUST_ROOT_REFRESHES.description
        )
        self._http = meter.create_histogram(
            HTTP_DURATION.name,
            HTTP_DURATION.unit,
            HTTP_DURATION.description,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self._prom: dict[str, Any] = {}
        for spec in SPECS:
            self._prom[spec.name] = self._prometheus_metric(spec)

    def _prometheus_metric(self, spec: _Spec) -> Any:
        common: dict[str, Any] = {
            "name": spec.prometheus_name,
            "documentation": spec.description,
            "labelnames": spec.labels,
            "registry": self.registry,
        }
        if spec.kind == "counter":
            return prometheus_client.Counter(**common)
        if spec.kind == "histogram":
            return prometheus_client.Histogram(**common, buckets=BUCKETS)
        return prometheus_client.Gauge(**common, multiprocess_mode=spec.combine)

    # -- recording ------------------------------------------------------------------------

    def _add(
        self, spec: _Spec, instrument: Any, value: float, attributes: Mapping[str, str | int]
    ) -> None:
        try:
            labelled = self._prom[spec.name].labels(*(str(attributes[a]) for a in spec.attributes))
            if spec.kind == "counter":
                instrument.add(value, attributes)
                labelled.inc(value)
            else:
                instrument.record(value, attributes)
                labelled.observe(value)
        except Exception:  # metrics must never fail a request
            log.exception("recording %s failed", spec.name)

    def verification(self, result: Result, reason: str) -> None:
        """One verification answered (a cached verdict counts too)."""
        self._add(VERIFICATIONS, self._verifications, 1, {"result": result, "reason": reason})

    def verification_time(self, policy: str, mode: str, outcome: Result, seconds: float) -> None:
        """How long one verification took to answer, under `policy` (a policy file's name, or
        `inline`: never a caller's string) in `mode`, and how it came out."""
        attributes = {"policy": policy, "mode": mode, "outcome": outcome}
        self._add(VERIFICATION_DURATION, self._verification_time, seconds, attributes)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        """One read of `cache` (a key namespace: `verdict`, `rekor`)."""
        result = "hit" if hit else "miss"
        self._add(CACHE_LOOKUPS, self._cache, 1, {"cache": cache, "result": result})

    def upstream_error(self, system: str, reason: str) -> None:
        """One failure of `system` (`registry`, `rekor`, `redis`), `reason` a short label."""
        self._add(UPSTREAM_ERRORS, self._upstream, 1, {"system": system, "reason": reason})

    def cache_event(self, event: str, namespace: str) -> None:
        """A `CacheStats` observer: hits and misses per cache, values refused as too large,
        errors as Redis failures."""
        if event in ("hit", "miss"):
            self.cache_lookup(namespace, event == "hit")
        elif event == "too-large":
            self._add(CACHE_LOOKUPS, self._cache, 1, {"cache": namespace, "result": event})
        else:
            self.upstream_error("redis", event)

    def watch_breaker(self, upstream: str, state: Callable[[], str]) -> None:
        """Report `state()` (`closed`, `half_open`, `open`) as `upstream`'s breaker gauge."""
        self._breakers[upstream] = state
        self.refresh_breakers()

    def refresh_breakers(self) -> None:
        """Copy each watched breaker's state into the Prometheus gauge (OTLP reads it live)."""
        gauge = self._prom[BREAKER_STATE.name]
        for upstream, state in self._breakers.items():
            gauge.labels(upstream).set(BREAKER_VALUES.get(state(), 2))

    def _observe_breakers(self, _options: CallbackOptions) -> Iterator[Observation]:
        for upstream, state in self._breakers.items():
            yield Observation(BREAKER_VALUES.get(state(), 2), {"upstream": upstream})

    def trust_root_refresh(self, result: str, reason: str | None) -> None:
        """One TUF refresh: `updated`, `unchanged` or `failed` (its reason an upstream error)."""
        self._add(TRUST_ROOT_REFRESHES, self._refreshes, 1, {"result": result})
        if reason is not None:
            self.upstream_error("tuf", reason)

    def watch_trust_root(self, reading: Callable[[], TrustRootReading]) -> None:
        """Report `reading()` as the trust-root gauges (call `refresh_trust_root` on changes)."""
        self._trust_root = reading
        self.refresh_trust_root()

    def refresh_trust_root(self) -> None:
        """Copy the watched trust root into the Prometheus gauges (OTLP reads it live); the
        root this worker used before goes to 0, so the totals show only roots still in use."""
        if self._trust_root is None:
            return
        try:
            now = self._trust_root()
            labels = (now.source, now.version, now.digest)
            info = self._prom[TRUST_ROOT_INFO.name]
            if self._trust_root_labels not in (None, labels):
                info.labels(*self._trust_root_labels).set(0)
            info.labels(*labels).set(1)
            self._trust_root_labels = labels
            self._prom[TRUST_ROOT_REFRESHED.name].set(now.refreshed_at)
            self._prom[TRUST_ROOT_EXPIRES.name].set(now.expires_at)
        except Exception:  # metrics must never fail a refresh
            log.exception("recording the trust root failed")

    def _observe_trust_root(self, _options: CallbackOptions) -> Iterator[Observation]:
        if self._trust_root is not None:
            now = self._trust_root()
            attributes = {"source": now.source, "version": now.version, "digest": now.digest}
            yield Observation(1, attributes)

    def _observe_trust_time(self, which: str) -> Iterator[Observation]:
        if self._trust_root is not None:
            yield Observation(getattr(self._trust_root(), which))

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        """A span, child of the current one, that records an escaping exception as an error."""
        with self.tracer.start_as_current_span(name, attributes=attributes) as current:
            yield current

    @contextmanager
    def step(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        """A span around one step of a verification, and its time in the step histogram."""
        start = time.perf_counter()
        try:
            with self.span(name, attributes) as current:
                yield current
        finally:
            self._add(STEP_DURATION, self._steps, time.perf_counter() - start, {"step": name})

    def timed(
        self, name: str, fn: Callable[[], _T], attributes: Mapping[str, Any] | None = None
    ) -> _T:
        """`fn()` as the step `name`."""
        with self.step(name, attributes):
            return fn()

    def start_request(
        self,
        *,
        method: str,
        route: str | None,
        path: str,
        headers: Mapping[str, str],
        client: str | None,
    ) -> RequestSpan:
        """The server span of one HTTP request, its parent taken from `traceparent` if sent.

        `headers` has lowercase names.
        """
        parent = propagate.extract(headers)
        name = f"{method} {route}" if route else method
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": path}
        if route:
            attributes["http.route"] = route
        if client:
            attributes["client.address"] = client
        agent = headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return RequestSpan(self, span, token, method, route or "", time.perf_counter())

    # -- /metrics -------------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        """Prometheus text exposition: every worker's values under gunicorn, else this one's."""
        self.refresh_breakers()
        self.refresh_trust_root()
        if self.multiprocess_dir:
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return prometheus_client.generate_latest(registry)
        return prometheus_client.generate_latest(self.registry)


@dataclass
class RequestSpan:
    """An HTTP request in flight: its span, attached as the current one until `finish`."""

    telemetry: Telemetry
    span: Span
    token: Token[Context]
    method: str
    route: str
    started: float
    status: int | None = field(default=None)

    @property
    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) as hex; None when no SDK is installed (nothing is traced)."""
        context = self.span.get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    def finish(self, error: BaseException | None = None) -> None:
        """End the span with the response status, record the duration, detach the context."""
        status = self.status if self.status is not None else 500
        try:
            self.span.set_attribute("http.response.status_code", status)
            if error is not None:
                self.span.record_exception(error)
            if status >= 500:
                self.span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            self.span.end()
            seconds = time.perf_counter() - self.started
            attributes: dict[str, str | int] = {
                "http.request.method": self.method,
                "http.route": self.route,
                "http.response.status_code": status,
            }
            self.telemetry._add(HTTP_DURATION, self.telemetry._http, seconds, attributes)
        finally:
            otel_context.detach(self.token)


def verdict_reason(verdict: Mapping[str, Any]) -> str:
    """A short label for why a verdict is what it is: `none`, or the first check that failed.

    `no-signatures` when nothing was found; `policy` when every signature passed its checks
    but the policy still wanted more (signers, attestations).
    """
    if verdict.get("verified") is True:
        return "none"
    signatures = verdict.get("signatures") or []
    if not signatures:
        return "no-signatures"
    for signature in signatures:
        for check in signature.get("checks") or []:
            if not check.get("passed"):
                return str(check.get("name", "unknown"))
    return "policy"


def current_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) as hex, or None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
