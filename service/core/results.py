"""What verification found: per-signature checks and the image verdict, as camelCase JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from service.core._util import from_unix, rfc3339
from service.core.certs import CertificateDetails

Evidence = Literal["inclusion-proof", "inclusion-promise", "none"]
Kind = Literal["cosign-signature", "cosign-attestation", "sigstore-bundle"]


@dataclass(frozen=True)
class Check:
    """One verification step and its outcome; `detail` says what was found."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


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

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "digest": self.digest,
            "verified": self.verified,
            "checks": [c.to_dict() for c in self.checks],
            "signer": self.signer,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
            "logEntry": None if self.log_entry is None else self.log_entry.to_dict(),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class ImageResult:
    """The verdict on an image: verified when enough distinct signers verified."""

    verified: bool
    signatures: tuple[SignatureResult, ...]
    signers: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "signers": list(self.signers),
            "signatures": [s.to_dict() for s in self.signatures],
            "reasons": list(self.reasons),
        }
