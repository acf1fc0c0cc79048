"""RFC 9457 problem details: one shape for every error the API returns.

Internals never leak: an unexpected exception is logged with its traceback and answered with a
generic 500 that carries only an id to find it in the log.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from service import registry
from service.outbound import DeadlineExceeded
from service.verification import UpstreamError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://sigverify.dev/problems/"


class ApiProblem(Exception):  # noqa: N818 - it is a response, not only an error
    """An error the API answers with a problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None) -> dict[str, Any]:
        """The problem details as JSON, for a response or a batch item."""
        return problem_body(
            self.status, self.title, self.detail, kind=self.kind, instance=instance, **self.extra
        )


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """RFC 9457 members, then `extra` (e.g. `errors`) as they are."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    return body


def problem(
    status: int, title: str, detail: str, *, kind: str | None = None, **extra: Any
) -> Response:
    """A problem+json response; `extra` members (e.g. `errors`) are added as they are."""
    instance = request.path if request else None
    body = problem_body(status, title, detail, kind=kind, instance=instance, **extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    if status == 405 and "allow" in extra:
        response.headers["Allow"] = ", ".join(extra["allow"])
    return response


# Registry errors as the API answers them: (status, title, problem type). Most specific first.
REGISTRY_PROBLEMS: tuple[tuple[type[registry.RegistryError], int, str, str], ...] = (
    (registry.InvalidReference, 400, "Bad Request", "invalid-request"),
    (registry.AddressRefused, 403, "Forbidden", "registry-refused"),
    (registry.NotFound, 404, "Not Found", "image-not-found"),
    (registry.LimitExceeded, 422, "Unprocessable Content", "limit-exceeded"),
    (registry.RegistryTimeout, 504, "Gateway Timeout", "registry-timeout"),
    (registry.RegistryCircuitOpen, 503, "Service Unavailable", "registry-circuit-open"),
    (registry.Unauthorized, 502, "Bad Gateway", "registry-unauthorized"),
    (registry.Unavailable, 502, "Bad Gateway", "registry-unavailable"),
    (registry.RegistryError, 502, "Bad Gateway", "registry-bad-response"),
)


def registry_problem(exc: registry.RegistryError) -> ApiProblem:
    """The problem a registry error is answered with; the message names what failed."""
    for kind, status, title, name in REGISTRY_PROBLEMS:
        if isinstance(exc, kind):
            extra: dict[str, Any] = {"reason": exc.reason}
            headers: dict[str, str] = {}
            if kind is registry.InvalidReference:
                extra["errors"] = {"image": [str(exc)]}
            if isinstance(exc, registry.RegistryCircuitOpen):
                extra["host"] = exc.host
                headers["Retry-After"] = str(max(1, math.ceil(exc.retry_in)))
            return ApiProblem(
                status, title, f"registry: {exc}", kind=name, headers=headers, **extra
            )
    raise AssertionError("RegistryError is the last row")  # pragma: no cover


# An image that cannot be verified now, by its problem's type: how answers that others read
# (admission messages, reports) name its trouble. Fixed words, never the problem's detail,
# which carries what an upstream said.
NOT_VERIFIABLE = {
    "invalid-request": "not a valid image reference",
    "registry-refused": "its registry may not be contacted from here",
    "image-not-found": "not found in its registry",
    "limit-exceeded": "its manifest or signatures are over a size or count limit",
    "registry-timeout": "its registry did not answer in time",
    "registry-unauthorized": "its registry refused access",
    "registry-unavailable": "its registry could not be reached",
    "registry-bad-response": "its registry gave an unusable answer",
    "registry-circuit-open": "its registry is failing, and is not asked for now",
    "rekor-timeout": "the transparency log did not answer in time",
    "rekor-unavailable": "the transparency log could not be reached",
}
# Problems whose detail is the service's own words (the admission time budget), shown as they are.
OWN_DETAIL = frozenset({"verification-timeout"})
UNEXPECTED = "sigverify failed unexpectedly (see its log)"


def trouble(problem: Mapping[str, Any]) -> tuple[str, str]:
    """A problem body's type (without the base) and its trouble in fixed words."""
    kind = str(problem.get("type") or "").removeprefix(TYPE_BASE)
    if kind in OWN_DETAIL:
        return kind, str(problem.get("detail") or kind)
    return kind, NOT_VERIFIABLE.get(kind, UNEXPECTED)


def late_problem(detail: str) -> ApiProblem:
    """An image whose verification did not finish within the request's time."""
    return ApiProblem(504, "Gateway Timeout", detail, kind="verification-timeout")


def operational_problem(exc: Exception) -> ApiProblem | None:
    """The problem an operational error (registry, Rekor, the request's own deadline) is
    answered with; None for others."""
    if isinstance(exc, registry.RegistryError):
        return registry_problem(exc)
    if isinstance(exc, DeadlineExceeded):
        return late_problem(f"not verified in time: {exc}")
    if isinstance(exc, UpstreamError):
        if exc.timeout:
            return ApiProblem(504, "Gateway Timeout", str(exc), kind="rekor-timeout")
        return ApiProblem(502, "Bad Gateway", str(exc), kind="rekor-unavailable")
    return None


def unexpected_problem(exc: Exception) -> ApiProblem:
    """A 500 that carries only an incident id; the traceback goes to the log under that id."""
    incident = uuid.uuid4().hex
    log.error("unhandled error (incident %s)", incident, exc_info=exc)
    return ApiProblem(
        500,
        "Internal Server Error",
        f"the service failed unexpectedly; incident {incident} is in its log",
        incident=incident,
    )


def install(app: Flask) -> None:
    """Answer every error, routing ones included, with problem+json."""

    @app.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        response = problem(exc.status, exc.title, exc.detail, kind=exc.kind, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(registry.RegistryError)
    @app.errorhandler(UpstreamError)
    @app.errorhandler(DeadlineExceeded)
    def _operational(exc: Exception) -> Response:
        found = operational_problem(exc)
        assert found is not None
        return _api_problem(found)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        extra: dict[str, Any] = {}
        if status == 405 and exc.response is None:
            valid = getattr(exc, "valid_methods", None)
            if valid:
                extra["allow"] = sorted(valid)
        detail = exc.description or exc.name
        if status == 404:
            detail = f"no such resource: {request.path}"
        elif status == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        return problem(status, exc.name, detail, **extra)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return _api_problem(unexpected_problem(exc))
