"""`POST /v1/verify`: schema in, service call, verdict out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from service import core
from service.api.auth import current_tenant
from service.api.body import InvalidJSON, loads
from service.api.errors import ApiProblem
from service.api.ratelimit import charge
from service.api.schemas import VerifyRequestSchema
from service.api.sightings import record, trouble_outcome
from service.policies import Mode, NamedPolicy
from service.registry import parse_reference
from service.reports import Outcome
from service.state import services
from service.verification import Verification

bp = Blueprint("verify", __name__, url_prefix="/v1")


def load_body(schema: Schema) -> dict[str, Any]:
    """The request's JSON body, validated by `schema`; a 400 problem naming each bad field."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        detail = "the request body must be a JSON object (Content-Type: application/json)"
        extra: dict[str, Any] = {}
        invalid = _why_not_json() if body is None else None
        if invalid is not None:
            detail += f"; it is not I-JSON: {invalid}"
            extra["errors"] = {invalid.field or "body": [invalid.reason]}
        raise ApiProblem(400, "Bad Request", detail, kind="invalid-request", **extra)
    try:
        loaded = schema.load(body)
    except ValidationError as exc:
        raise ApiProblem(
            400,
            "Bad Request",
            "the request has invalid fields: " + ", ".join(sorted(_flatten(exc.messages))),
            kind="invalid-request",
            errors=_flatten(exc.messages),
        ) from None
    assert isinstance(loaded, dict)
    return loaded


def _why_not_json() -> InvalidJSON | None:
    """Why a JSON request's body did not parse (Flask's `get_json` keeps it to itself)."""
    if not request.is_json:
        return None
    try:
        loads(request.get_data(cache=True))
    except InvalidJSON as exc:
        return exc
    return None


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"policy.certificateIdentity": ["..."]}."""
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "body": list(messages)}
    return {prefix or "body": [str(messages)]}


def build_policy(raw: dict[str, Any], field: str = "policy") -> core.Policy:
    """A core policy from a validated mapping; semantic errors become a 400 naming the field."""
    try:
        svc = services()
        return core.policy_from_mapping(
            raw,
            max_regexp_length=svc.settings.max_regexp_length,
            trust_roots=svc.verifier.trust_root_names,
        )
    except core.PolicyError as exc:
        name = f"{field}.{exc.field}" if getattr(exc, "field", None) else field
        raise ApiProblem(
            400,
            "Bad Request",
            f"the policy is invalid: {exc}",
            kind="invalid-request",
            errors={name: [str(exc)]},
        ) from None


@dataclass(frozen=True)
class ChosenPolicy:
    """The policy a request names or carries, with its name, mode and (named) tenant."""

    policy: core.Policy
    name: str | None
    mode: Mode
    tenant: str | None = None

    def outcome(self, verification: Verification) -> dict[str, Any]:
        """The verdict as answered: with the mode, and whether a failure is enforced."""
        verdict = verification.verdict
        return {
            **verdict,
            "policy": {**verdict["policy"], "mode": self.mode},
            "enforced": self.mode == "enforce",
            "cached": verification.cached,
        }


def visible_policy(name: str, tenant: str | None) -> NamedPolicy | None:
    """The named policy `tenant` may use (any, with auth off), or None: another tenant's
    policy is answered as if it did not exist."""
    named = services().policies.get(name)
    if named is None or (tenant is not None and named.tenant != tenant):
        return None
    return named


def choose_policy(item: dict[str, Any], prefix: str = "") -> ChosenPolicy:
    """An item's inline `policy` or its `policyName`, as the caller's tenant may use it."""
    svc = services()
    if "policyName" in item:
        name = item["policyName"]
        named = visible_policy(name, current_tenant())
        if named is None:
            raise ApiProblem(
                404,
                "Not Found",
                f"no policy named {name!r} for this caller (see GET /v1/policies)",
                kind="policy-not-found",
                errors={f"{prefix}policyName": ["no such policy"]},
            )
        return ChosenPolicy(named.policy, named.name, named.mode, named.tenant)
    if not svc.settings.inline_policies:
        raise ApiProblem(
            403,
            "Forbidden",
            "inline policies are switched off here: name a policy with policyName",
            kind="inline-policies-off",
            errors={f"{prefix}policy": ["inline policies are switched off"]},
        )
    return ChosenPolicy(build_policy(item["policy"], f"{prefix}policy"), None, "enforce")


@bp.post("/verify")
def verify() -> Response:
    body = load_body(VerifyRequestSchema())
    chosen = choose_policy(body)
    charge()
    try:
        result = services().verifier.verify(
            parse_reference(body["image"]), chosen.policy, policy_name=chosen.name, mode=chosen.mode
        )
    except Exception as exc:
        record(chosen, "verify", [(body["image"], trouble_outcome(exc, chosen))])
        raise
    record(chosen, "verify", [(body["image"], Outcome.of_verdict(result.verdict))])
    return jsonify(chosen.outcome(result))
