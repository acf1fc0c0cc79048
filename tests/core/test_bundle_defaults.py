"""Bundles as protobuf JSON writes them: fields that hold their default are left out.

Found from outside: a sigstore-js bundle for the first entry of a log (log index 0, an
inclusion proof with no hashes) omits both fields, as protobuf's JSON mapping does, and the
core refused it before verifying. The bundles here are real: signed with the local CA and
logged to a fresh local log, whose first entry has exactly those defaults, then written the
way protobuf JSON encoders write them. Every default read back is checked by the proof and
the SET as any value is: each acceptance has a tampered twin that fails.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from service.core import ImageResult, TrustRoot, policy_from_mapping, verify_artifact
from tests.conformance.cases import CASES, PRODUCTION_ROOT
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY, protobuf_json
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, p256
from tests.sigstore_local.encoding import pem_public, public_key_of
from tests.sigstore_local.fresh import FreshLogs
from tests.sigstore_local.signer import SignedBundle, Signer

DIGEST = "sha256:" + "5e" * 32
POLICY = policy_from_mapping(
    {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
)
KINDS = ["message-signature", "dsse"]


@pytest.fixture(scope="module")
def fresh() -> FreshLogs:
    return FreshLogs(CertificateAuthority())


def sign(signer: Signer, kind: str) -> SignedBundle:
    if kind == "dsse":
        return signer.dsse_bundle(DIGEST)
    return signer.message_bundle(DIGEST)


@pytest.fixture(scope="module")
def signed(fresh: FreshLogs) -> dict[str, tuple[SignedBundle, SignedBundle]]:
    """Per kind, the first and the second entry of one fresh log."""
    out: dict[str, tuple[SignedBundle, SignedBundle]] = {}
    for kind in KINDS:
        signer = fresh.signer()
        out[kind] = (sign(signer, kind), sign(signer, kind))
    return out


@pytest.fixture(scope="module")
def trust(fresh: FreshLogs, signed: dict[str, Any]) -> TrustRoot:
    return fresh.trust()  # after `signed`: it names every log made


def verify(bundle: dict[str, Any], trust: TrustRoot) -> ImageResult:
    return verify_artifact(
        bundle=json.dumps(bundle).encode(),
        artifact_digest=DIGEST,
        policy=POLICY,
        trust=trust,
        now=datetime.now(UTC),
    )


def failed(result: ImageResult) -> dict[str, str]:
    (signature,) = result.signatures
    return {c.name: c.detail for c in signature.checks if not c.passed}


def entry_of(bundle: dict[str, Any]) -> dict[str, Any]:
    (entry,) = bundle["verificationMaterial"]["tlogEntries"]
    assert isinstance(entry, dict)
    return entry


@pytest.fixture(params=KINDS)
def first(request: pytest.FixtureRequest, signed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The first entry's bundle as protobuf JSON writes it: no logIndex, no proof logIndex,
    no hashes (checked, so that the test cannot quietly stop exercising the defaults)."""
    bundle = protobuf_json(signed[request.param][0].bundle)
    entry = entry_of(bundle)
    assert "logIndex" not in entry
    assert "logIndex" not in entry["inclusionProof"] and "hashes" not in entry["inclusionProof"]
    assert entry["inclusionProof"]["treeSize"] == "1"
    yield bundle


@pytest.fixture(params=KINDS)
def second(request: pytest.FixtureRequest, signed: dict[str, Any]) -> dict[str, Any]:
    """The second entry of the same log, as written: log index 1, one hash in its proof."""
    bundle = protobuf_json(signed[request.param][1].bundle)
    entry = entry_of(bundle)
    assert entry["logIndex"] == "1" and len(entry["inclusionProof"]["hashes"]) == 1
    assert isinstance(bundle, dict)
    return bundle


def test_the_first_entry_of_a_log_verifies_as_protobuf_json(
    first: dict[str, Any], trust: TrustRoot
) -> None:
    result = verify(first, trust)
    assert result.verified, result.reasons
    (signature,) = result.signatures
    assert signature.log_entry is not None and signature.log_entry.log_index == 0


def test_defaults_given_explicitly_or_as_null_or_as_numbers_read_the_same(
    first: dict[str, Any], trust: TrustRoot
) -> None:
    """protobuf JSON reads a null as the default and an int64 as a string or a number."""
    explicit = copy.deepcopy(first)
    entry = entry_of(explicit)
    entry["logIndex"] = "0"
    entry["inclusionProof"].update(logIndex="0", hashes=[])
    nulls = copy.deepcopy(first)
    entry_of(nulls).update(logIndex=None)
    entry_of(nulls)["inclusionProof"].update(logIndex=None, hashes=None)
    numbers = copy.deepcopy(first)
    entry = entry_of(numbers)
    entry["integratedTime"] = int(entry["integratedTime"])
    entry["logIndex"] = 0
    entry["inclusionProof"]["treeSize"] = 1
    for bundle in (explicit, nulls, numbers):
        result = verify(bundle, trust)
        assert result.verified, result.reasons


def test_a_later_entry_verifies_and_a_default_does_not_shadow_its_proto_name(
    second: dict[str, Any], trust: TrustRoot
) -> None:
    assert verify(second, trust).verified
    # protobuf JSON parsers also take the proto field names: log_index is not "absent".
    renamed = copy.deepcopy(second)
    entry = entry_of(renamed)
    entry["log_index"] = entry.pop("logIndex")
    proof = entry["inclusionProof"]
    proof["log_index"] = proof.pop("logIndex")
    result = verify(renamed, trust)
    assert result.verified, result.reasons


@pytest.mark.parametrize(
    "omitted",
    ["logIndex", "inclusionProof.logIndex", "inclusionProof.hashes"],
)
def test_a_default_read_into_a_later_entry_fails_its_evidence(
    second: dict[str, Any], trust: TrustRoot, omitted: str
) -> None:
    """The second entry with a field left out: it reads as 0 or [], which its SET (logIndex)
    or its inclusion proof (the proof's index, the hashes) does not support."""
    bundle = copy.deepcopy(second)
    entry = entry_of(bundle)
    holder = entry["inclusionProof"] if omitted.startswith("inclusionProof.") else entry
    del holder[omitted.rpartition(".")[2]]
    result = verify(bundle, trust)
    assert not result.verified
    assert "bundle" in failed(result), failed(result)


@pytest.mark.parametrize(
    "tamper",
    [
        {"logIndex": "1"},
        {"inclusionProof.logIndex": "1", "inclusionProof.treeSize": "2"},
        {"inclusionProof.hashes": [base64.b64encode(b"\x00" * 32).decode()]},
        {"inclusionProof.treeSize": "2"},
    ],
    ids=["log-index", "proof-index", "extra-hash", "tree-size"],
)
def test_the_first_entry_with_other_evidence_fails(
    first: dict[str, Any], trust: TrustRoot, tamper: dict[str, Any]
) -> None:
    bundle = copy.deepcopy(first)
    entry = entry_of(bundle)
    for name, value in tamper.items():
        holder = entry["inclusionProof"] if name.startswith("inclusionProof.") else entry
        holder[name.rpartition(".")[2]] = value
    result = verify(bundle, trust)
    assert not result.verified
    assert "bundle" in failed(result), failed(result)


@pytest.mark.parametrize(
    "field",
    [
        "kindVersion",
        "logId",
        "canonicalizedBody",
        "inclusionProof.rootHash",
        "inclusionProof.treeSize",
        "inclusionProof.checkpoint",
        "inclusionProof",
    ],
)
def test_fields_whose_default_is_no_valid_value_are_still_refused(
    first: dict[str, Any], trust: TrustRoot, field: str
) -> None:
    """The specs do not allow these to be absent (no tree has size 0, no entry an empty
    body): the bundle stays unusable rather than read with a made-up value."""
    bundle = copy.deepcopy(first)
    entry = entry_of(bundle)
    holder = entry["inclusionProof"] if field.startswith("inclusionProof.") else entry
    del holder[field.rpartition(".")[2]]
    result = verify(bundle, trust)
    assert not result.verified
    assert "not a usable sigstore bundle" in failed(result)["bundle"]


def test_negative_or_fractional_numbers_are_no_int64(
    first: dict[str, Any], trust: TrustRoot
) -> None:
    for value in (-1, 0.5, True):
        bundle = copy.deepcopy(first)
        entry_of(bundle)["logIndex"] = value
        assert "not a usable sigstore bundle" in failed(verify(bundle, trust))["bundle"]


# -- a key-signed bundle without a key hint ----------------------------------------------------

KEYED = CASES / "managed-key-happy-path"
KEYED_DIGEST = "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"  # a.txt


def test_a_key_signed_bundle_without_a_hint_verifies() -> None:
    """`publicKey.hint` is an optional, unauthenticated string: protobuf JSON leaves an empty
    one out, as `publicKey: {}`. The signature still has to verify with a policy key."""
    bundle = json.loads((KEYED / "bundle.sigstore.json").read_text())
    bundle["verificationMaterial"]["publicKey"] = {}
    trust = TrustRoot.from_json(PRODUCTION_ROOT.read_bytes())
    policy = policy_from_mapping({"keys": [(KEYED / "key.pub").read_text()]})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    result = verify_artifact(
        bundle=json.dumps(bundle).encode(),
        artifact_digest=KEYED_DIGEST,
        policy=policy,
        trust=trust,
        now=now,
    )
    assert result.verified, result.reasons
    other = policy_from_mapping({"keys": [pem_public(public_key_of(p256()))]})
    refused = verify_artifact(
        bundle=json.dumps(bundle).encode(),
        artifact_digest=KEYED_DIGEST,
        policy=other,
        trust=trust,
        now=now,
    )
    assert not refused.verified
