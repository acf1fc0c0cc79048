"""`GET /v1/policies`: the named policies the caller's tenant may use."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api.auth import current_tenant
from service.state import services

bp = Blueprint("policies", __name__, url_prefix="/v1")


@bp.get("/policies")
def list_policies() -> Response:
    svc = services()
    visible = svc.policies.visible_to(current_tenant())
    return jsonify(
        policies=[p.to_dict() for p in sorted(visible, key=lambda p: p.name)],
        inlinePolicies=svc.settings.inline_policies,
    )
