"""The self-made Sigstore instance the core tests use: see `tests.sigstore_local.offline`.

Kept as a module so the core tests' imports stay short; the implementation lives in
`tests/sigstore_local` (one CA, one log, one trusted-root writer for every test suite).
"""

from __future__ import annotations

from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.encoding import b64, pem_public
from tests.sigstore_local.offline import (
    NOW,
    SIGNED_AT,
    FakeSigstore,
    Signed,
    dsse_attestation,
    hashedrekord_body,
    keyless_layer,
    simple_signing,
)

__all__ = [
    "ACTIONS",
    "NOW",
    "SIGNED_AT",
    "FakeSigstore",
    "Signed",
    "b64",
    "dsse_attestation",
    "hashedrekord_body",
    "keyless_layer",
    "pem_public",
    "simple_signing",
]
