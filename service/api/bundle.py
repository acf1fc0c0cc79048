"""`POST /v1/verify/bundle`: a Sigstore bundle over an artifact's digest; schema in, service
call, verdict out (what `cosign verify-blob` and `gh attestation verify` do, offline)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api.ratelimit import charge
from service.api.schemas import VerifyBundleRequestSchema
from service.api.verify import choose_policy, load_body
from service.state import services

bp = Blueprint("bundle", __name__, url_prefix="/v1")


@bp.post("/verify/bundle")
def verify_bundle() -> Response:
    body = load_body(VerifyBundleRequestSchema())
    chosen = choose_policy(body)
    charge()
    result = services().verifier.verify_artifact(
        body["bundle"],
        body["artifactDigest"],
        chosen.policy,
        policy_name=chosen.name,
        mode=chosen.mode,
    )
    return jsonify(chosen.outcome(result))
