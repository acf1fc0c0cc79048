"""A server span per request, and `GET /metrics` (Prometheus text).

The span starts before any other hook (authentication included), takes its parent from a W3C
`traceparent` header when the caller sends one, is named `METHOD /route`, and ends with the
response status after every other hook. Its ids go into the WSGI environ for the access log.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, request

from service.api.errors import ApiProblem
from service.state import services
from service.telemetry import PROMETHEUS_CONTENT_TYPE, SPAN_ID_ENV, TRACE_ID_ENV, RequestSpan

bp = Blueprint("observability", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text: every worker's counters under gunicorn (see `service.telemetry`)."""
    svc = services()
    if not svc.settings.metrics:
        raise ApiProblem(404, "Not Found", "metrics are turned off (SIGVERIFY_METRICS=false)")
    response = Response(svc.telemetry.prometheus_text(), content_type=PROMETHEUS_CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    """Trace every request of `app`; call before any other `before_request` is registered."""

    @app.before_request
    def _start_span() -> None:
        rule = request.url_rule
        current = services().telemetry.start_request(
            method=request.method,
            route=rule.rule if rule is not None else None,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            client=request.remote_addr,
        )
        g.sigverify_request = current
        ids = current.ids
        if ids is not None:
            request.environ[TRACE_ID_ENV], request.environ[SPAN_ID_ENV] = ids

    @app.after_request
    def _status(response: Response) -> Response:
        current: RequestSpan | None = g.get("sigverify_request")
        if current is not None:
            current.status = response.status_code
        return response

    @app.teardown_request
    def _end_span(error: BaseException | None) -> None:
        current: RequestSpan | None = g.pop("sigverify_request", None)
        if current is not None:
            current.finish(error)
