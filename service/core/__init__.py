"""The pure verification core: cosign signatures, attestations and Sigstore bundles checked
against a trust root and a policy. No I/O, no clock: trust material, log evidence and the time
arrive as arguments.
"""

from __future__ import annotations

from service.core.certs import CertificateDetails
from service.core.errors import CoreError, InputError, PolicyError, TrustRootError
from service.core.inputs import (
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    InclusionProof,
    LogEntry,
    LogLookup,
    needed_log_lookups,
)
from service.core.policy import Identity, Policy, policy_from_mapping
from service.core.results import Check, ImageResult, LogEvidence, SignatureResult
from service.core.trust import DEFAULT_TRUST_ROOT, TrustRoot
from service.core.verify import verify_artifact, verify_image

__all__ = [
    "DEFAULT_TRUST_ROOT",
    "BundleSignature",
    "CertificateDetails",
    "Check",
    "CoreError",
    "CosignAttestation",
    "CosignSignature",
    "Identity",
    "ImageResult",
    "InclusionProof",
    "InputError",
    "LogEntry",
    "LogEvidence",
    "LogLookup",
    "Policy",
    "PolicyError",
    "SignatureResult",
    "TrustRoot",
    "TrustRootError",
    "needed_log_lookups",
    "policy_from_mapping",
    "verify_artifact",
    "verify_image",
]
