"""Request schemas: shape and types here, meaning in `service.core.policy_from_mapping`.

Unknown fields are refused, so a misspelt constraint (`certificateIdentiy`) is a 400 naming the
field rather than a policy that silently accepts more than intended.
"""

from __future__ import annotations

from typing import Any

import rfc8785
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from service.registry import RegistryError, parse_reference

MAX_REFERENCE = 512
MAX_VALUE = 1024
MAX_PEM = 16384
MAX_LIST = 20


def _text() -> fields.String:
    """A non-empty string of bounded length (every policy value)."""
    return fields.String(validate=validate.Length(min=1, max=MAX_VALUE))


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class IdentitySchema(_Strict):
    """One acceptable signer identity, as `cosign verify` flags (camelCase)."""

    certificateIdentity = _text()
    certificateIdentityRegexp = _text()
    certificateOidcIssuer = _text()
    certificateOidcIssuerRegexp = _text()
    certificateGithubWorkflowTrigger = _text()
    certificateGithubWorkflowSha = _text()
    certificateGithubWorkflowName = _text()
    certificateGithubWorkflowRepository = _text()
    certificateGithubWorkflowRef = _text()
    extensions = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=_text(),
        validate=validate.Length(max=32),
    )


class _StrictBoolean(fields.Boolean):
    """JSON `true` or `false` only: marshmallow's Boolean also reads 1, "yes" or "on" as true."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class TransparencyLogSchema(_Strict):
    required = _StrictBoolean()
    allowInclusionPromise = _StrictBoolean()


def _identities() -> fields.List[Any]:
    return fields.List(fields.Nested(IdentitySchema), validate=validate.Length(max=MAX_LIST))


def _keys() -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_PEM)),
        validate=validate.Length(max=MAX_LIST),
    )


# `in` is a Python keyword, hence a schema built from a dict.
ConditionSchema = _Strict.from_dict(
    {
        "path": fields.String(required=True, validate=validate.Length(min=1, max=256)),
        "equals": fields.Raw(allow_none=True),
        "in": fields.List(fields.Raw(allow_none=True), validate=validate.Length(min=1, max=64)),
        "matches": _text(),
        "startsWith": _text(),
        "exists": _StrictBoolean(),
    },
    name="ConditionSchema",
)


class AttestationSchema(_Strict):
    """An attestation the image must have: predicate type, signers, conditions."""

    name = fields.String(validate=validate.Length(min=1, max=64))
    predicateType = fields.String(required=True, validate=validate.Length(min=1, max=256))
    identities = _identities()
    keys = _keys()
    conditions = fields.List(fields.Nested(ConditionSchema), validate=validate.Length(max=32))


class PolicySchema(IdentitySchema):
    """An inline policy: top-level identity fields, more identities, keys and a threshold,
    required attestations, whether attestations count as signatures, and the trust roots it
    accepts."""

    identities = _identities()
    keys = _keys()
    threshold = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_LIST))
    transparencyLog = fields.Nested(TransparencyLogSchema)
    attestations = fields.List(fields.Nested(AttestationSchema), validate=validate.Length(max=10))
    trustRoots = fields.List(
        fields.String(validate=validate.Length(min=1, max=63)),
        validate=validate.Length(min=1, max=10),
    )
    acceptAttestationsAsSignatures = _StrictBoolean()


def _image_parses(value: str) -> None:
    try:
        parse_reference(value)
    except RegistryError as exc:
        raise ValidationError(str(exc)) from None


def _image() -> fields.String:
    """An image reference that parses as Docker reads it."""
    return fields.String(
        required=True,
        validate=[validate.Length(min=1, max=MAX_REFERENCE), _image_parses],
    )


POLICY_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9._-]{0,62}$", error="not a policy name")


class _PolicyChoice(_Strict):
    """An inline `policy` or a `policyName` from the policy file: one of them, not both."""

    policy = fields.Nested(PolicySchema)
    policyName = fields.String(validate=POLICY_NAME)

    @validates_schema
    def _not_both(self, data: dict[str, Any], **_: Any) -> None:
        if "policy" in data and "policyName" in data:
            raise ValidationError("give policy or policyName, not both", "policyName")


class VerifyRequestSchema(_PolicyChoice):
    """`POST /v1/verify`: an image reference and the policy to verify it against."""

    image = _image()

    @validates_schema
    def _one_policy(self, data: dict[str, Any], **_: Any) -> None:
        if "policy" not in data and "policyName" not in data:
            raise ValidationError("give policy or policyName", "policy")


class BatchItemSchema(_PolicyChoice):
    """One image of a batch, with its own policy or the batch's."""

    image = _image()


class BatchRequestSchema(_PolicyChoice):
    """`POST /v1/verify/batch`: images, each with its policy or the one for all."""

    images = fields.List(fields.Nested(BatchItemSchema), required=True)

    def __init__(self, max_images: int) -> None:
        super().__init__()
        self.max_images = max_images

    @validates("images")
    def _bounded(self, value: list[Any], **_: Any) -> None:
        if not 1 <= len(value) <= self.max_images:
            raise ValidationError(f"found {len(value)} images, expected 1 to {self.max_images}")

    @validates_schema
    def _every_image_has_a_policy(self, data: dict[str, Any], **_: Any) -> None:
        if "policy" in data or "policyName" in data:
            return
        missing = [
            i
            for i, item in enumerate(data.get("images", []))
            if "policy" not in item and "policyName" not in item
        ]
        if missing:
            message = "no policy or policyName here and none for the batch"
            raise ValidationError({"images": {i: {"policy": [message]} for i in missing}})


BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"


class _BundleField(fields.Field):  # type: ignore[type-arg]
    """A Sigstore bundle: a JSON object whose `mediaType` names one, loaded as the bytes of its
    RFC 8785 canonical JSON (so its digest does not depend on the client's formatting). What
    is inside is the verifier's to judge: a bundle it cannot use is a failed verdict."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bytes:
        if not isinstance(value, dict):
            raise ValidationError("found no object, expected a Sigstore bundle")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type.startswith(BUNDLE_MEDIA_TYPE):
            raise ValidationError(
                {"mediaType": [f"found {media_type!r:.80}, expected {BUNDLE_MEDIA_TYPE}..."]}
            )
        try:
            return rfc8785.dumps(value)
        except rfc8785.CanonicalizationError as exc:
            raise ValidationError(f"found no JSON that can be canonicalised: {exc}") from None


class VerifyBundleRequestSchema(_PolicyChoice):
    """`POST /v1/verify/bundle`: a Sigstore bundle, the artifact's digest, and the policy."""

    bundle = _BundleField(required=True)
    artifactDigest = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^sha256:[0-9a-f]{64}$", error="found {input!r:.80}, expected sha256:<64 hex>"
        ),
    )

    @validates_schema
    def _one_policy(self, data: dict[str, Any], **_: Any) -> None:
        if "policy" not in data and "policyName" not in data:
            raise ValidationError("give policy or policyName", "policy")
