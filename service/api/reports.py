"""`GET /v1/reports/{policy}`: what a named policy saw in the window, per image digest.

Tenant-scoped like the policy: another tenant's policy is answered as if it did not exist.
The report is aggregated on read from the sightings the service recorded (`service.reports`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api.auth import current_tenant
from service.api.errors import ApiProblem
from service.api.verify import visible_policy
from service.reports import Report, ReportPolicy
from service.state import services

bp = Blueprint("reports", __name__, url_prefix="/v1")


def read_report(name: str, tenant: str | None) -> Report | None:
    """The report of the policy `name` as `tenant` may see it (any with auth off), or None."""
    named = visible_policy(name, tenant)
    if named is None:
        return None
    policy = ReportPolicy(named.name, named.tenant, named.mode, named.policy.digest)
    return services().reports.read(policy)


@bp.get("/reports/<policy>")
def report(policy: str) -> Response:
    found = read_report(policy, current_tenant())
    if found is None:
        raise ApiProblem(
            404,
            "Not Found",
            f"no policy named {policy!r:.80} for this caller (see GET /v1/policies)",
            kind="policy-not-found",
            errors={"policy": ["no such policy"]},
        )
    return jsonify(found.to_dict())
