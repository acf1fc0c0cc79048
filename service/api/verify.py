"""`POST /v1/verify`: schema in, service call, verdict out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from service import core
from service.api.errors import ApiProblem
from service.api.schemas import VerifyRequestSchema
from service.registry import parse_reference
from service.state import services

bp = Blueprint("verify", __name__, url_prefix="/v1")


def load_body(schema: Schema) -> dict[str, Any]:
    """The request's JSON body, validated by `schema`; a 400 problem naming each bad field."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiProblem(
            400,
            "Bad Request",
            "the request body must be a JSON object (Content-Type: application/json)",
            kind="invalid-request",
        )
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
        return core.policy_from_mapping(
            raw, max_regexp_length=services().settings.max_regexp_length
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


@bp.post("/verify")
def verify() -> Response:
    body = load_body(VerifyRequestSchema())
    policy = build_policy(body["policy"])
    result = services().verifier.verify(parse_reference(body["image"]), policy)
    return jsonify({**result.verdict, "cached": result.cached})
