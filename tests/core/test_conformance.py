"""The sigstore-conformance `bundle-verify` cases, through `verify_image` as bundle referrers.

Each case verifies the bundle for the artifact's sha256 as the "image digest", with the case's
identity and issuer and its trusted root (production when it ships none). Cases whose name ends
in `_fail` must not verify. Managed-key cases are skipped: key-signed bundles are refused.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.core import (
    BundleSignature,
    CoreError,
    TrustRoot,
    policy_from_mapping,
    verify_image,
)
from tests.core.data import DATA

CASES = DATA / "sigstore-conformance" / "bundle-verify"
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
# sigstore-python 4.5.1 limitations, the same ones upstream lists for it
KNOWN_FALSE_REJECTS = {
    "intoto-with-custom-trust-root": "integrated time only for dsse/hashedrekord 0.0.1",
    "trust-root-tsa-validity-end-inclusive": "closed TSA validity interval (new case)",
}


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir() and not (p / "key.pub").exists())


def _read(case: Path, name: str, default: str) -> str:
    path = case / name
    return path.read_text().strip() if path.exists() else default


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return TrustRoot.production()


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_bundle_verify_case(case: Path, production: TrustRoot) -> None:
    if case.name in KNOWN_FALSE_REJECTS:
        pytest.xfail(KNOWN_FALSE_REJECTS[case.name])
    expected = not case.name.endswith("_fail")
    artifact = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    try:
        trust = (
            TrustRoot.from_json((case / "trusted_root.json").read_bytes())
            if (case / "trusted_root.json").exists()
            else production
        )
    except CoreError:
        assert not expected, f"{case.name}: the trusted root was refused"
        return
    policy = policy_from_mapping(
        {
            "certificateIdentity": _read(case, "identity", DEFAULT_IDENTITY),
            "certificateOidcIssuer": _read(case, "issuer", DEFAULT_ISSUER),
        }
    )
    bundle = BundleSignature(
        (case / "bundle.sigstore.json").read_bytes(), "sha256:" + "0" * 64, case.name
    )
    result = verify_image(
        image_digest=digest,
        signatures=[bundle],
        log_entries={},
        policy=policy,
        trust=trust,
        now=datetime(2026, 11, 24, tzinfo=UTC),
    )
    assert result.verified is expected, result.reasons


def test_key_signed_bundles_fail_closed(production: TrustRoot) -> None:
    case = CASES / "managed-key-happy-path"
    digest = "sha256:" + hashlib.sha256((CASES / "a.txt").read_bytes()).hexdigest()
    key = (case / "key.pub").read_text()
    result = verify_image(
        image_digest=digest,
        signatures=[BundleSignature((case / "bundle.sigstore.json").read_bytes(), digest, "k")],
        log_entries={},
        policy=policy_from_mapping({"keys": [key]}),
        trust=production,
        now=datetime(2026, 11, 24, tzinfo=UTC),
    )
    assert not result.verified
    (check,) = [c for c in result.signatures[0].checks if not c.passed]
    assert check.name == "bundle"
    assert "key-signed bundles are not supported" in check.detail or "usable" in check.detail
