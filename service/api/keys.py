"""`GET /v1/keys`: the public keys that verdicts are signed with (PEM and JWKS)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service import verdicts
from service.state import services

bp = Blueprint("keys", __name__, url_prefix="/v1")


@bp.get("/keys")
def keys() -> Response:
    response = jsonify(verdicts.public_keys(services().published_keys))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
