"""Liveness, readiness, version and the API contract."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import platform
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from service.api.auth import AUTH_OFF_WARNING, gatekeeper_warning
from service.keys import DEV_KEY_WARNING
from service.state import services
from service.tlog.trust import RefreshState, RootInfo, describe_refresh

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
    root, info, state = svc.trust.snapshot()
    checks: dict[str, Any] = {
        "trustRoot": {
            "ok": True,
            "digest": root.digest,
            **info.to_dict(),
            "refresh": describe_refresh(svc.trust),
        },
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
    gatekeeper = gatekeeper_warning(svc.settings, tokens=svc.tokens.enabled)
    if gatekeeper is not None:
        warnings.append(gatekeeper)
    warnings.extend(_trust_warnings(info, state))
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


def _trust_warnings(info: RootInfo, state: RefreshState | None) -> list[str]:
    """A refresh that keeps failing, and a root whose TUF metadata has expired: the service
    still verifies (with the root it has), but someone should look."""
    warnings = []
    if state is not None and state.error is not None:
        warnings.append(
            f"trust root refresh failing ({state.failures} in a row): {state.error}; "
            f"verifying with the {info.source} root meanwhile"
        )
    if info.expires is not None and info.expires < datetime.now(UTC):
        warnings.append(
            f"trust root metadata expired at {info.expires:%Y-%m-%dT%H:%M:%SZ}: TUF has not "
            "confirmed this root since then"
        )
    return warnings


@bp.get("/version")
def version() -> Response:
    root, info, _state = services().trust.snapshot()
    return jsonify(
        name="sigverify",
        version=importlib.metadata.version("sigverify"),
        sigstore=importlib.metadata.version("sigstore"),
        python=platform.python_version(),
        trustRoot={"digest": root.digest, **info.to_dict()},
    )


@bp.get("/openapi.yaml")
def openapi() -> Response:
    spec = importlib.resources.files("service") / "data" / "openapi.yaml"
    response = Response(spec.read_bytes(), mimetype="application/yaml")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
