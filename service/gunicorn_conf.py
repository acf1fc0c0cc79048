"""gunicorn's configuration, all of it from the SIGVERIFY_* settings.

`sigverify serve` runs `gunicorn -c python:service.gunicorn_conf service.wsgi:app`; a container
or an operator can run the same command. The hooks: the master makes the directory where the
workers' Prometheus values meet and gives each worker a slot in it; each worker starts
OpenTelemetry after the fork (its batch span processor and metric reader run threads that a
fork does not carry) and flushes it when it exits.
"""

from __future__ import annotations

import math
import os
import ssl
from typing import Any

from service import logs, telemetry
from service.config import Settings

_settings = Settings.from_env()

bind = _settings.bind
# HTTPS when both are set (Settings checks both or neither): the API server calls webhooks so.
certfile = str(_settings.tls_cert_file) if _settings.tls_cert_file else None
keyfile = str(_settings.tls_key_file) if _settings.tls_key_file else None
# The API server's client certificate for POST /v1/admission, and Gatekeeper's for
# POST /v1/gatekeeper: asked of every TLS client but required of none at the TLS layer (other
# callers have none); a certificate offered is checked against the CAs here, and each view
# requires one of its names (service.api.auth). gunicorn builds the TLS context for each
# connection, so a renewed CA file is read without a restart.
_client_cas = [
    str(path)
    for path in (_settings.admission_client_ca_file, _settings.gatekeeper_client_ca_file)
    if path is not None
]
if _client_cas:
    cert_reqs = ssl.CERT_OPTIONAL
    ca_certs = _client_cas[0]


def ssl_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
    """gunicorn's TLS context for a connection, trusting every client CA that is set."""
    context: ssl.SSLContext = default_ssl_context_factory()
    for more in _client_cas[1:]:
        context.load_verify_locations(cafile=more)
    return context


workers = _settings.workers
threads = _settings.threads
loglevel = _settings.log_level.lower()
# gthread, except that a request reaches a thread only once it has all arrived, within
# SIGVERIFY_CLIENT_TIMEOUT (see service.gunicorn_worker): slow clients hold no thread.
worker_class = "service.gunicorn_worker.ReadingWorker"
timeout = 30
# A request in flight when the worker is told to stop gets its whole deadline to be answered.
graceful_timeout = math.ceil(_settings.request_timeout) + 5
keepalive = 5  # seconds a connection may stay silent (kept alive, or before its first byte)
# A badge URL carries a whole image reference (up to 512 characters, percent-encoded up to three
# times that): room for it, still far below what would let a request line burn memory.
limit_request_line = 8190
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
# JSON to stderr (stdout for the access log), with trace ids; see service.logs.
logconfig_dict = logs.gunicorn_logconfig(_settings.log_format, _settings.log_level)
if _settings.log_format == "json":
    access_log_format = "%(m)s %(U)s %(s)s"  # the `message`; the fields are separate
# Every worker builds its own app (and so its own HTTP and Redis clients) after fork.
preload_app = False


def on_starting(server: Any) -> None:
    """Master, once: a fresh directory for the workers' Prometheus values."""
    server.sigverify_metrics_dir = None
    if _settings.metrics:
        server.sigverify_metrics_dir = telemetry.prepare_metrics_dir()
    else:
        os.environ.pop(telemetry.MULTIPROC_ENV, None)


def pre_fork(server: Any, worker: Any) -> None:
    """Master: the lowest metrics slot no live worker holds."""
    worker.sigverify_slot = telemetry.free_slot(
        getattr(w, "sigverify_slot", None) for w in server.WORKERS.values()
    )


def post_fork(server: Any, worker: Any) -> None:
    """Worker, before it loads the app: its metrics slot and its OpenTelemetry providers."""
    if telemetry.metrics_dir():
        telemetry.use_metrics_slot(worker.sigverify_slot)
    telemetry.start_worker()


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, on its way out: export the spans and metrics still buffered."""
    telemetry.shutdown_worker()


def child_exit(server: Any, worker: Any) -> None:
    """Master, a worker gone: its gauges go, its counters stay in the totals."""
    telemetry.release_metrics_slot(worker.sigverify_slot)


def on_exit(server: Any) -> None:
    """Master, at shutdown: remove the metrics directory."""
    if server.sigverify_metrics_dir:
        telemetry.remove_metrics_dir(server.sigverify_metrics_dir)
