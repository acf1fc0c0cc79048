"""`GET /v1/badge`: an SVG (or shields.io endpoint JSON) badge of an image's verdict.

Public, for portals: no token is asked for, and none changes the answer. So a badge answers only
for a policy the policy file marks `public: true`. Any other name, a policy that is not public
(whoever its tenant) or none at all, gets one and the same "unknown policy" answer, byte for byte,
before anything is charged or sent to a registry: a badge URL cannot tell which policies exist,
nor, through the service's registry credentials, which private repositories and tags do.

Every answer renders: each state is an SVG (HTTP 200; 400 for a malformed URL, 429 past the rate
limit), so a page's `<img>` never breaks, with an `ETag` (`If-None-Match` answers 304) and a
`Cache-Control` lifetime. A public badge goes through the same verification service, verdict
cache and limits as `POST /v1/verify`, so a busy page costs one verification per verdict
lifetime, not one per view.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from service.api import badge_svg
from service.api.badge_svg import Badge, State
from service.api.errors import ApiProblem, operational_problem
from service.api.ratelimit import charge
from service.outbound import DeadlineExceeded
from service.registry import RegistryError, parse_reference
from service.state import services
from service.verification import UpstreamError

log = logging.getLogger(__name__)

bp = Blueprint("badge", __name__, url_prefix="/v1")

_POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Seconds a badge that is not a verdict may be kept: an outage ends, a policy is published.
ERROR_MAX_AGE = 30
DISABLED_MAX_AGE = 300
MAX_VERDICT_AGE = 300


def badge_for(verdict: dict[str, Any], *, audit: bool, max_age: int) -> Badge:
    """The badge of a verdict: the signer when verified; a failure under an audit policy looks
    unlike an enforced one."""
    if verdict["verified"]:
        signers = verdict.get("signers") or []
        signer = badge_svg.short_signer(signers[0]) if signers else None
        return Badge.of(badge_svg.VERIFIED, max_age, signer)
    if not verdict["signatures"]:
        return Badge.of(badge_svg.AUDIT_UNSIGNED if audit else badge_svg.UNSIGNED, max_age)
    return Badge.of(badge_svg.AUDIT_FAILED if audit else badge_svg.FAILED, max_age)


def _invalid_fields() -> list[str]:
    """The query's malformed fields, by name (empty: it is well formed)."""
    bad = []
    try:
        parse_reference(request.args.get("image", ""))
    except RegistryError:
        bad.append("image")
    if not _POLICY_NAME.fullmatch(request.args.get("policy", "")):
        bad.append("policy")
    if request.args.get("format", "svg") not in ("svg", "json"):
        bad.append("format")
    return bad


def _invalid(fields: list[str], fmt: str) -> Response:
    if fmt == "json":
        reasons = {
            "image": "expected an image reference",
            "policy": "expected the name of a policy from the policy file",
            "format": "expected svg or json",
        }
        raise ApiProblem(
            400,
            "Bad Request",
            "the request has invalid fields: " + ", ".join(fields),
            kind="invalid-request",
            errors={name: [reasons[name]] for name in fields},
        )
    message = f"invalid {fields[0]}" if len(fields) == 1 else None
    return _answer(Badge.of(badge_svg.INVALID, 0, message), fmt, status=400)


def _answer(shown: Badge, fmt: str, *, status: int = 200) -> Response:
    """The badge as SVG or shields JSON, cacheable for its lifetime, with an ETag."""
    if fmt == "json":
        response = jsonify(badge_svg.shields(shown))
    else:
        response = Response(badge_svg.svg(shown), mimetype="image/svg+xml")
    response.status_code = status
    if shown.max_age > 0:
        response.headers["Cache-Control"] = f"public, max-age={shown.max_age}"
    if status == 200:
        response.add_etag()  # a hash of the body
        response.make_conditional(request)
    return response


def _state_of_problem(exc: Exception) -> State:
    problem = operational_problem(exc)
    assert problem is not None
    if problem.status == 404:
        return badge_svg.NOT_FOUND
    log.info("badge %s: %s", problem.kind, problem.detail)
    return badge_svg.ERROR


@bp.get("/badge")
def badge() -> Response:
    svc = services()
    fmt = "json" if request.args.get("format") == "json" else "svg"
    if not svc.settings.badges:
        return _answer(Badge.of(badge_svg.DISABLED, DISABLED_MAX_AGE), fmt)
    invalid = _invalid_fields()
    if invalid:
        return _invalid(invalid, fmt)
    image, name = request.args["image"], request.args["policy"]
    named = svc.policies.get(name)
    if named is None or not named.public:
        # The same answer for every name a badge may not show: nothing else happens for it.
        return _answer(Badge.of(badge_svg.UNKNOWN_POLICY, ERROR_MAX_AGE), fmt)
    try:
        charge()
    except ApiProblem as exc:
        if exc.status != 429 or fmt == "json":
            raise
        limited = _answer(Badge.of(badge_svg.RATE_LIMITED, 0), fmt, status=429)
        limited.headers.update(exc.headers)
        return limited
    try:
        found = svc.verifier.verify(
            parse_reference(image), named.policy, policy_name=named.name, mode=named.mode
        )
    except (RegistryError, UpstreamError, DeadlineExceeded) as exc:
        return _answer(Badge.of(_state_of_problem(exc), ERROR_MAX_AGE), fmt)
    max_age = int(min(svc.settings.verdict_ttl, MAX_VERDICT_AGE))
    return _answer(badge_for(found.verdict, audit=named.mode == "audit", max_age=max_age), fmt)
