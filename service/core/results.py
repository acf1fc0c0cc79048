"""What verification found: per-signature checks and the image verdict, as camelCase JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.core._util import from_unix, rfc3339
from service.core.certs import CertificateDetails
from service.core.conditions import ConditionResult

Evidence = Literal["inclusion-proof", "inclusion-promise", "none"]
Kind = Literal["cosign-signature", "cosign-attestation", "sigstore-bundle"]
Role = Literal["signature", "attestation"]


@dataclass(frozen=True)
class Check:
    """One verification step and its outcome; `detail` says what was found.

    `awaiting_log` marks a failed check that failed only because the transparency log could
    not be reached: log evidence could still turn it into a pass. Every other failure is final.
    """

    name: str
    passed: bool
    detail: str
    awaiting_log: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.awaiting_log:
            out["awaitingLog"] = True
        return out


@dataclass(frozen=True)
class LogEvidence:
    """The transparency-log entry a signature was proven with, and how."""

    uuid: str | None
    log_index: int
    integrated_time: int | None  # None: a Rekor v2 entry (time comes from a timestamp)
    log_id: str
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        when = self.integrated_time
        return {
            "uuid": self.uuid,
            "logIndex": self.log_index,
            "integratedTime": None if when is None else rfc3339(from_unix(when)),
            "logId": self.log_id,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class SignatureResult:
    """One signature: every check run, who signed, the certificate and the log entry."""

    kind: Kind
    source: str
    digest: str
    checks: tuple[Check, ...]
    signer: str | None
    certificate: CertificateDetails | None
    log_entry: LogEvidence | None
    statement: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The in-toto statement a DSSE signature carries (attestations), once it parsed."""
    trust_root: str | None = None  # the trust root it was checked against, by name
    role: Role = "signature"
    """What it counts as, as cosign counts: a signature (a `.sig` layer, a bundle with a message
    signature or cosign's own signing statement) or an attestation (a `.att` layer, any other
    DSSE bundle), which counts toward a signature policy only where the policy says so."""

    @property
    def predicate_type(self) -> str | None:
        kind = None if self.statement is None else self.statement.get("predicateType")
        return kind if isinstance(kind, str) else None

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def awaiting_log(self) -> bool:
        """Not verified, and only for want of log evidence the log could not be asked for."""
        failed = [c for c in self.checks if not c.passed]
        return bool(failed) and all(c.awaiting_log for c in failed)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "role": self.role,
            "source": self.source,
            "digest": self.digest,
            "verified": self.verified,
            "checks": [c.to_dict() for c in self.checks],
            "signer": self.signer,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
            "logEntry": None if self.log_entry is None else self.log_entry.to_dict(),
            "predicateType": self.predicate_type,
            "trustRoot": self.trust_root,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class AttestationMatch:
    """One attestation of the required type: whether it verified, and each condition."""

    signature: SignatureResult
    conditions: tuple[ConditionResult, ...]

    @property
    def satisfied(self) -> bool:
        return self.signature.verified and all(c.held for c in self.conditions)

    @property
    def awaiting_log(self) -> bool:
        """Not satisfied, but would be if the log evidence it awaits verified."""
        return self.signature.awaiting_log and all(c.held for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        s = self.signature
        return {
            "kind": s.kind,
            "source": s.source,
            "digest": s.digest,
            "verified": s.verified,
            "signer": s.signer,
            "satisfied": self.satisfied,
            "conditions": [c.to_dict() for c in self.conditions],
            "reasons": list(s.reasons),
        }


@dataclass(frozen=True)
class AttestationResult:
    """A policy's attestation requirement: met when one attestation of its type satisfies it."""

    name: str
    predicate_type: str
    matches: tuple[AttestationMatch, ...]
    found_types: tuple[str, ...]  # every predicate type the image's attestations carry

    @property
    def satisfied(self) -> bool:
        return any(m.satisfied for m in self.matches)

    @property
    def could_be_satisfied(self) -> bool:
        """Satisfied, or would be with the log evidence that could not be fetched."""
        return any(m.satisfied or m.awaiting_log for m in self.matches)

    @property
    def reasons(self) -> tuple[str, ...]:
        if self.satisfied:
            return ()
        if not self.matches:
            found = ", ".join(self.found_types) or "none"
            return (
                f"attestation {self.name}: found no attestation of type "
                f"{self.predicate_type} (types found: {found})",
            )
        out: list[str] = []
        for m in self.matches:
            why = [*m.signature.reasons] + [
                f"condition {c.describe()}" for c in m.conditions if not c.held
            ]
            out += [f"attestation {self.name} {m.signature.digest}: {w}" for w in why]
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "predicateType": self.predicate_type,
            "satisfied": self.satisfied,
            "attestations": [m.to_dict() for m in self.matches],
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class ImageResult:
    """The verdict on an image: verified when enough distinct signers verified.

    `awaiting_log`: not verified, but log evidence that could not be fetched (the log was not
    reached) could still make it verify, so the outcome is not known yet. When it is False a
    failure is final, whatever the log would say.
    """

    verified: bool
    signatures: tuple[SignatureResult, ...]
    signers: tuple[str, ...]
    reasons: tuple[str, ...]
    attestations: tuple[AttestationResult, ...] = ()
    awaiting_log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "signers": list(self.signers),
            "signatures": [s.to_dict() for s in self.signatures],
            "attestations": [a.to_dict() for a in self.attestations],
            "reasons": list(self.reasons),
        }
