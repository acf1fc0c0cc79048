"""Why an image would be denied, grouped by how to fix it: the one place that says so.

A failed verification names checks and reasons in the verifier's words; a tenant needs to know
what to do. `classify` turns what failed (a `Finding`) into one `Fix`: a category, a title and
a sentence a tenant can act on. The categories, in the order a report lists them:

| fix | when |
|---|---|
| `unsigned` | no signature and no attestation at all |
| `only-attestations` | attestations, but nothing that counts as a signature |
| `wrong-identity` | signed, but the certificate's SAN or workflow claims are not the policy's |
| `wrong-issuer` | signed by the right kind of identity through another OIDC issuer |
| `wrong-key` | signed with another key, or keyless where a key is expected (or the reverse) |
| `attestation` | the signature verified, a required attestation is missing or fails |
| `threshold` | fewer distinct verified signers than the policy's threshold |
| `evidence` | certificate chain, validity, SCT, timestamp or transparency-log evidence failed |
| `invalid-signature` | a signature does not verify over this image, or is malformed |
| `unverifiable` | not verified when seen: registry or log unreachable, slow, access refused |
| `other` | none of the above (see the reasons) |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    """A way an image fails, and what its owner can do about it."""

    name: str
    title: str
    action: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "title": self.title, "action": self.action}


UNSIGNED = Fix(
    "unsigned",
    "Not signed",
    "Sign the image in CI after pushing it (cosign sign IMAGE@DIGEST, keyless from the "
    "workflow the policy names), or deploy a build that was signed.",
)
ONLY_ATTESTATIONS = Fix(
    "only-attestations",
    "Attestations but no signature",
    "The image carries attestations but no signature: sign it as well (cosign sign), or, if "
    "an attestation is how your builder signs, have acceptAttestationsAsSignatures set in the "
    "policy.",
)
WRONG_IDENTITY = Fix(
    "wrong-identity",
    "Signed by another identity",
    "Sign from the CI workflow (certificate identity) the policy expects; the reasons show who "
    "signed and what was expected. If that signer is right, have the policy's identity updated.",
)
WRONG_ISSUER = Fix(
    "wrong-issuer",
    "Signed through another OIDC issuer",
    "Sign from the CI system whose OIDC issuer the policy names (GitHub Actions: "
    "https://token.actions.githubusercontent.com), or have the policy's issuer updated.",
)
WRONG_KEY = Fix(
    "wrong-key",
    "Signed with another key",
    "Sign with one of the keys the policy lists, or keyless if the policy names identities "
    "rather than keys.",
)
ATTESTATION = Fix(
    "attestation",
    "Missing or failing attestation",
    "Attach the attestation the policy requires (cosign attest --type ..., or your builder's "
    "provenance) from the expected signer, with a statement that meets its conditions.",
)
THRESHOLD = Fix(
    "threshold",
    "Too few signers",
    "Add signatures from more of the signers the policy accepts: it wants more distinct "
    "signers than the image has.",
)
EVIDENCE = Fix(
    "evidence",
    "Certificate or transparency-log evidence failed",
    "Sign against the Sigstore instance the policy trusts (the public-good one, or the private "
    "one its trustRoots name), with the transparency-log upload left on.",
)
INVALID_SIGNATURE = Fix(
    "invalid-signature",
    "Signature does not match the image",
    "A signature does not verify over this image or is malformed (altered, or copied from "
    "another image): sign the image again.",
)
UNVERIFIABLE = Fix(
    "unverifiable",
    "Could not be verified when seen",
    "sigverify could not reach, or was refused by, the image's registry or the transparency "
    "log, or ran out of time; under enforce such an image is denied until it can be verified. "
    "Check that sigverify may pull from that registry.",
)
OTHER = Fix("other", "Other", "See the reasons.")

FIXES: tuple[Fix, ...] = (
    UNSIGNED,
    ONLY_ATTESTATIONS,
    WRONG_IDENTITY,
    WRONG_ISSUER,
    WRONG_KEY,
    ATTESTATION,
    THRESHOLD,
    EVIDENCE,
    INVALID_SIGNATURE,
    UNVERIFIABLE,
    OTHER,
)
BY_NAME = {fix.name: fix for fix in FIXES}

# Check names (service.core) by what failing them means.
_EVIDENCE_CHECKS = frozenset(
    {
        "certificate-chain",
        "certificate-validity",
        "sct",
        "transparency-log",
        "log-entry-match",
        "inclusion-proof",
        "inclusion-promise",
        "timestamp",
    }
)
_MATCH_CHECKS = frozenset(
    {"layer-digest", "image-digest", "artifact-digest", "bundle", "signature"}
)
# Words of the core's identity and key checks (service.core.policy, service.core.verify).
_ISSUER = "oidc issuer "
_KEY_MISMATCHES = (
    "expected a key-signed signature",
    "does not verify with any policy key",
    "expected a keyless signature",
)
# The order in which one signature's failure explains the image best, when several failed.
_PRIORITY = (WRONG_IDENTITY, WRONG_ISSUER, WRONG_KEY, EVIDENCE, INVALID_SIGNATURE, OTHER)


@dataclass(frozen=True)
class FailedCheck:
    """The first check that failed of one signature that counts toward the policy."""

    name: str
    detail: str


@dataclass(frozen=True)
class Finding:
    """What failed in a verification, as far as the fix depends on it."""

    no_signatures: bool = False  # nothing counted as a signature
    attestations_found: int = 0  # attestations that were there all the same
    failed: tuple[FailedCheck, ...] = ()  # per counted signature that did not verify
    attestations_unmet: bool = False  # a required attestation was not satisfied
    threshold_unmet: bool = False


def classify(finding: Finding) -> Fix:
    """The fix for a failed verification."""
    if finding.no_signatures:
        return ONLY_ATTESTATIONS if finding.attestations_found else UNSIGNED
    if finding.failed:
        return min((_check_fix(c) for c in finding.failed), key=_PRIORITY.index)
    if finding.attestations_unmet:
        return ATTESTATION
    if finding.threshold_unmet:
        return THRESHOLD
    return OTHER


def _check_fix(check: FailedCheck) -> Fix:
    """The fix one failed check calls for."""
    if check.name == "identity":
        if any(words in check.detail for words in _KEY_MISMATCHES):
            return WRONG_KEY
        mismatches = [_unlabelled(m) for m in check.detail.split("; ") if m.strip()]
        if mismatches and all(m.startswith(_ISSUER) for m in mismatches):
            return WRONG_ISSUER
        return WRONG_IDENTITY
    if check.name == "signature" and any(words in check.detail for words in _KEY_MISMATCHES):
        return WRONG_KEY
    if check.name in _EVIDENCE_CHECKS:
        return EVIDENCE
    if check.name in _MATCH_CHECKS:
        return INVALID_SIGNATURE
    return OTHER


def _unlabelled(mismatch: str) -> str:
    """One identity mismatch without the label (`policy: `, `identities[1]: `) that a policy
    of several identities puts before each."""
    label, sep, rest = mismatch.strip().partition(": ")
    named = label == "policy" or label.startswith("identities[")
    return rest if sep and named else mismatch.strip()
