"""`GET /v1/badge`: an SVG (or shields.io endpoint JSON) badge of an image's verdict.

Public, for portals. A badge names a policy from the policy file (no inline policies in a URL)
and goes through the same verification service, verdict cache and limits as `POST /v1/verify`,
so a busy page costs one verification per verdict lifetime, not one per view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, jsonify, request

from service.api.errors import ApiProblem, operational_problem
from service.api.ratelimit import charge
from service.registry import RegistryError, parse_reference
from service.state import services
from service.verification import UpstreamError

bp = Blueprint("badge", __name__, url_prefix="/v1")

LABEL = "sigstore"
COLORS = {"verified": "#2e7d32", "failed": "#c62828", "unsigned": "#757575", "error": "#ef6c00"}
_POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_GITHUB = re.compile(r"^https://github\.com/([^/]+/[^/]+)/\.github/workflows/([^@]+)@(.+)$")
MAX_MESSAGE = 48
ERROR_MAX_AGE = 30


@dataclass(frozen=True)
class Badge:
    """What a badge shows: its state, the message, and how long it may be cached."""

    state: str
    message: str
    max_age: int


def short_signer(signer: str) -> str:
    """A signer as a person reads it on a badge: `owner/repo workflow.yml@main`, or the SAN."""
    identity = signer.split(" (", 1)[0]
    match = _GITHUB.match(identity)
    if match:
        repo, workflow, ref = match.groups()
        ref = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        identity = f"{repo} {workflow.rsplit('/', 1)[-1]}@{ref}"
    if len(identity) > MAX_MESSAGE:
        identity = identity[: MAX_MESSAGE - 1] + "…"
    return identity


def badge_for(verdict: dict[str, Any], max_age: int) -> Badge:
    if verdict["verified"]:
        signers = verdict.get("signers") or []
        message = short_signer(signers[0]) if signers else "verified"
        return Badge("verified", message, max_age)
    if not verdict["signatures"]:
        return Badge("unsigned", "unsigned", max_age)
    return Badge("failed", "failed", max_age)


def svg(badge: Badge) -> str:
    """A flat two-part badge; widths from the text length (about 6.5 px per character)."""
    left_w = 10 + round(6.5 * len(LABEL))
    right_w = 10 + round(6.5 * len(badge.message))
    width = left_w + right_w
    label, message = escape(LABEL), escape(badge.message)
    color = COLORS[badge.state]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
        f'<rect width="{left_w}" height="20" fill="#555"/>'
        f'<rect x="{left_w}" width="{right_w}" height="20" fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{left_w / 2}" y="14">{label}</text>'
        f'<text x="{left_w + right_w / 2}" y="14">{message}</text></g></svg>'
    )


def _query() -> tuple[str, str, str]:
    image = request.args.get("image", "")
    policy = request.args.get("policy", "")
    fmt = request.args.get("format", "svg")
    errors: dict[str, list[str]] = {}
    try:
        parse_reference(image)
    except RegistryError as exc:
        errors["image"] = [str(exc)]
    if not _POLICY_NAME.fullmatch(policy):
        errors["policy"] = ["expected the name of a policy from the policy file"]
    if fmt not in ("svg", "json"):
        errors["format"] = ["expected svg or json"]
    if errors:
        raise ApiProblem(
            400,
            "Bad Request",
            "the request has invalid fields: " + ", ".join(sorted(errors)),
            kind="invalid-request",
            errors=errors,
        )
    return image, policy, fmt


@bp.get("/badge")
def badge() -> Response:
    svc = services()
    if not svc.settings.badges:
        raise ApiProblem(404, "Not Found", "badges are switched off here", kind="not-found")
    image, name, fmt = _query()
    named = svc.policies.get(name)
    if named is None:
        raise ApiProblem(404, "Not Found", f"no policy named {name!r}", kind="policy-not-found")
    max_age = int(min(svc.settings.verdict_ttl, 300))
    charge()
    try:
        found = svc.verifier.verify(parse_reference(image), named.policy, policy_name=name)
        shown = badge_for(found.verdict, max_age)
    except (RegistryError, UpstreamError) as exc:
        problem = operational_problem(exc)
        assert problem is not None
        if problem.status < 500 and problem.status != 404:
            raise problem from None
        shown = Badge("error", "error" if problem.status >= 500 else "not found", ERROR_MAX_AGE)
    if fmt == "json":
        response = jsonify(
            schemaVersion=1,
            label=LABEL,
            message=shown.message,
            color=COLORS[shown.state].lstrip("#"),
            isError=shown.state == "error",
            cacheSeconds=shown.max_age,
        )
    else:
        response = Response(svg(shown), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = f"public, max-age={shown.max_age}"
    return response
