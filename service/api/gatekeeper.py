"""`POST /v1/gatekeeper/{policy}`: an external data provider for OPA Gatekeeper.

Gatekeeper's `external_data` Rego builtin (and its audit) sends a ProviderRequest
(`externaldata.gatekeeper.sh/v1beta1`) whose keys are image references, over HTTPS, to the URL of
a cluster-scoped `Provider`, and expects a ProviderResponse within the Provider's `timeout`
(seconds, 3 in Gatekeeper's examples). Every key is verified, concurrently (the batch machinery),
under the named policy in the path, and answered by one item:

- `value`: the verification's outcome, a verdict in brief: `verified`, the digest the reference
  resolved to and the digest-pinned reference (`image`), the policy's name and mode, `signers`,
  and `reasons` when it failed. A failed verification (unsigned, wrong signer, tampered) is a
  value with `verified: false`: a fact about the image, not an error.
- `error`: the image cannot be verified now (its registry is down, refused, the tag does not
  exist, or the time budget ran out): the same fixed words the admission webhook uses, never
  what an upstream said (whoever may create a Pod reads these messages; the log keeps the rest).

The answer arrives within SIGVERIFY_GATEKEEPER_TIMEOUT seconds (default 2, below the Provider's
timeout): a key whose verification has not finished by then is an error item, so one slow
registry never turns the whole answer into a late one that Gatekeeper would drop.

A request that cannot be answered key by key (not a ProviderRequest, too many keys, no such
policy, the provider off, a caller without Gatekeeper's certificate) is still a ProviderResponse,
with `systemError` saying why and the HTTP status that fits (400, 401/403, 404, 413, 500): the
builtin parses every answer's body as a ProviderResponse whatever its status, so a
problem+json body would reach Rego as an answer with no items and no error at all. The status
reaches Rego too (`status_code`).

`idempotent` is false: an answer depends on the time (certificates, the policy file, where a
tag points now), and this provider serves validation only (Gatekeeper's mutation requires
idempotent providers). Gatekeeper caches each item, errors included, for its
`--external-data-provider-response-cache-ttl` (3 minutes by default).

Tenancy: Gatekeeper is one caller for the whole cluster and sends no token; it may name the
policies of SIGVERIFY_GATEKEEPER_TENANT, and any other name (another tenant's policy included)
is answered as if it did not exist. Its client certificate is checked in `service.api.auth`.
Calls are not charged to a rate limit: Gatekeeper is one caller for every namespace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, json, request
from werkzeug.exceptions import HTTPException

from service.api.admission import MAX_REASON_CHARS, _clip, failure_of
from service.api.batch import verify_all
from service.api.errors import ApiProblem, unexpected_problem
from service.api.verify import ChosenPolicy
from service.config import PREFIX
from service.state import services

log = logging.getLogger(__name__)

bp = Blueprint("gatekeeper", __name__, url_prefix="/v1")

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
# Gatekeeper before v3.11 sent v1alpha1; the request and response are the same.
API_VERSIONS = frozenset({API_VERSION, "externaldata.gatekeeper.sh/v1alpha1"})
MAX_KEY_CHARS = 1024  # a key is an image reference (the parser caps those lower)
MAX_REASONS = 5  # of a failed verification's reasons, each clipped to MAX_REASON_CHARS


class ProviderRequestError(ValueError):
    """A malformed ProviderRequest; `field` is the path of the bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_provider_request(body: Any, max_keys: int) -> tuple[str, tuple[str, ...]]:
    """The request's apiVersion and its keys, unique, in order; `ProviderRequestError` names a
    bad field."""
    if not isinstance(body, Mapping):
        raise ProviderRequestError("body", "expected a JSON object")
    version = body.get("apiVersion")
    if not isinstance(version, str) or version not in API_VERSIONS:
        raise ProviderRequestError("apiVersion", f"expected {API_VERSION}")
    if body.get("kind") != "ProviderRequest":
        raise ProviderRequestError("kind", "expected ProviderRequest")
    req = body.get("request")
    if not isinstance(req, Mapping):
        raise ProviderRequestError("request", "expected an object")
    keys = req.get("keys", [])
    if not isinstance(keys, list):
        raise ProviderRequestError("request.keys", "expected a list of image references")
    unique: dict[str, None] = {}
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key.strip():
            raise ProviderRequestError(f"request.keys[{index}]", "expected an image reference")
        if len(key) > MAX_KEY_CHARS:
            raise ProviderRequestError(
                f"request.keys[{index}]", f"longer than {MAX_KEY_CHARS} characters"
            )
        unique.setdefault(key)
    if len(unique) > max_keys:
        raise ProviderRequestError(
            "request.keys",
            f"{len(unique)} images, more than {PREFIX}BATCH_MAX_IMAGES={max_keys} in one request",
        )
    return version, tuple(unique)


def item_for(key: str, result: Mapping[str, Any], chosen: ChosenPolicy) -> dict[str, Any]:
    """One key's item: the verdict in brief as its `value`, or the `error` that kept it from
    one (the admission webhook's words for it)."""
    verdict = result.get("verdict")
    if verdict is None:
        failure = failure_of(result)
        assert failure is not None  # a result without a verdict is a problem
        return {"key": key, "error": failure.reason}
    image = verdict.get("image") or {}
    digest = image.get("digest")
    pinned = f"{image.get('registry')}/{image.get('repository')}@{digest}"
    reasons = [
        _clip(str(r), MAX_REASON_CHARS) for r in (verdict.get("reasons") or [])[:MAX_REASONS]
    ]
    value = {
        "verified": verdict.get("verified") is True,
        "digest": digest,
        "image": pinned,
        "resolvedFromTag": image.get("resolvedFromTag") is True,
        "policy": chosen.name,
        "mode": chosen.mode,
        "enforced": chosen.mode == "enforce",
        "signers": verdict.get("signers") or [],
        "reasons": reasons,
        "degraded": verdict.get("degraded") is True,
        "verifiedAt": verdict.get("verifiedAt"),
        "cached": verdict.get("cached") is True,
    }
    return {"key": key, "value": value}


def _answer(
    version: str, *, items: list[dict[str, Any]] | None = None, error: str | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"idempotent": False}
    if error is not None:
        response["systemError"] = error
    else:
        response["items"] = items or []
    return {"apiVersion": version, "kind": "ProviderResponse", "response": response}


def _respond(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _chosen(policy: str) -> ChosenPolicy:
    """The named policy the path names, if the provider's tenant may use it."""
    svc = services()
    tenant = svc.settings.gatekeeper_tenant
    if tenant is None:
        raise ApiProblem(
            404,
            "Not Found",
            f"the Gatekeeper provider is off: set {PREFIX}GATEKEEPER_TENANT to the tenant whose "
            "policies Gatekeeper may name",
            kind="gatekeeper-not-configured",
        )
    named = svc.policies.get(policy)
    if named is None or named.tenant != tenant:
        # Another tenant's policy is answered as if it did not exist.
        raise ApiProblem(
            404,
            "Not Found",
            f"no policy named {policy[:64]!r} for the Gatekeeper provider (see GET /v1/policies)",
            kind="policy-not-found",
        )
    return ChosenPolicy(named.policy, named.name, named.mode)


@bp.post("/gatekeeper/<policy>")
def provider(policy: str) -> Response:
    svc = services()
    # The budget counts from here: Gatekeeper's timeout started a little earlier.
    budget = svc.settings.gatekeeper_timeout
    deadline = time.monotonic() + budget
    chosen = _chosen(policy)
    try:
        version, keys = parse_provider_request(
            request.get_json(silent=True), svc.settings.batch_max_images
        )
    except ProviderRequestError as exc:
        raise ApiProblem(
            400,
            "Bad Request",
            f"not a ProviderRequest {API_VERSION}: {exc}",
            kind="invalid-request",
            errors={exc.field: [str(exc)]},
        ) from None
    results = verify_all(
        svc,
        [(key, chosen) for key in keys],
        timeout=max(0.0, deadline - time.monotonic()),
        late=f"not verified within the time budget of {budget:g}s",
    )
    items = [item_for(key, result, chosen) for key, result in zip(keys, results, strict=True)]
    # What the upstreams said stays here, in the log (the items carry fixed words).
    troubled = [
        f"{key}: {failure.logged}"
        for key, result in zip(keys, results, strict=True)
        if "problem" in result and (failure := failure_of(result)) is not None
    ]
    if troubled:
        log.info(
            "gatekeeper (policy %s): %d of %d image(s) cannot be verified now: %s",
            chosen.name,
            len(troubled),
            len(keys),
            "; ".join(troubled),
        )
    return _respond(_answer(version, items=items))


@bp.errorhandler(ApiProblem)
def _problem(exc: ApiProblem) -> Response:
    """Every refusal on this path as a ProviderResponse with `systemError` (see the module)."""
    response = _respond(_answer(_version(), error=exc.detail), exc.status)
    response.headers.update(exc.headers)
    return response


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = "the request body is too large" if status == 413 else (exc.description or "")
    return _respond(_answer(_version(), error=detail), status)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    problem = unexpected_problem(exc)
    return _respond(_answer(_version(), error=problem.detail), 500)


def _version() -> str:
    """The apiVersion to answer in: the request's, when it is one this provider speaks."""
    try:
        body = request.get_json(silent=True)
    except HTTPException:  # the body is what failed (too large)
        body = None
    version = body.get("apiVersion") if isinstance(body, Mapping) else None
    return version if isinstance(version, str) and version in API_VERSIONS else API_VERSION
