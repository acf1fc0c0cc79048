"""Liveness, readiness, version and the API contract."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import platform
from typing import Any

from flask import Blueprint, Response, jsonify

from service.api.auth import AUTH_OFF_WARNING
from service.keys import DEV_KEY_WARNING
from service.state import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. Checks nothing downstream, on purpose."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: trust root and signing key loaded; the cache is reported, not required.

    A Redis outage leaves the service correct but uncached, so it stays ready (status
    `degraded`) rather than taking every pod out of the load balancer at once.
    """
    svc = services()
    cache_ok = svc.cache.healthy()
    checks: dict[str, Any] = {
        "trustRoot": {"ok": True, "source": svc.trust_origin, "digest": svc.trust.digest},
        "signingKey": {"ok": True, "keyId": svc.signing_key.key_id},
        "cache": {"ok": cache_ok, "backend": svc.cache.backend},
    }
    warnings: list[str] = []
    if svc.signing_key.development:
        checks["signingKey"]["development"] = True
        warnings.append(DEV_KEY_WARNING)
    if not cache_ok:
        warnings.append("cache unreachable: answering uncached")
    if not svc.tokens.enabled:
        warnings.append(AUTH_OFF_WARNING)
    checks["policies"] = {
        "ok": svc.policies.last_error is None,
        "count": len(svc.policies.visible_to(None)),
    }
    if svc.policies.last_error is not None:
        warnings.append(
            f"policy file rejected, previous version in force: {svc.policies.last_error}"
        )
    status = "ok" if cache_ok else "degraded"
    return jsonify(status=status, checks=checks, warnings=warnings), 200


@bp.get("/version")
def version() -> Response:
    return jsonify(
        name="sigverify",
        version=importlib.metadata.version("sigverify"),
        sigstore=importlib.metadata.version("sigstore"),
        python=platform.python_version(),
    )


@bp.get("/openapi.yaml")
def openapi() -> Response:
    spec = importlib.resources.files("service") / "data" / "openapi.yaml"
    response = Response(spec.read_bytes(), mimetype="application/yaml")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
