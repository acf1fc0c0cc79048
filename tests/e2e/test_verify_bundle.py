"""`POST /v1/verify/bundle` under gunicorn, with the production root kept in tests/data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tests.conformance.cases import CASES, PRODUCTION_ROOT, load
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY, protobuf_json
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fresh import FreshLogs
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner, SignedBundle


def test_a_release_file_bundle_under_gunicorn(start_service: ServiceFactory) -> None:
    good, bad = load(CASES / "happy-path-v0.1"), load(CASES / "signature-mismatch_fail")
    with start_service(trust_root_file=str(PRODUCTION_ROOT)) as (_, client):
        verdicts = [
            client.post(
                "/v1/verify/bundle",
                json={
                    "bundle": json.loads(case.bundle.read_text()),
                    "artifactDigest": case.digest,
                    "policy": {
                        "certificateIdentity": case.identity,
                        "certificateOidcIssuer": case.issuer,
                    },
                },
            )
            for case in (good, bad)
        ]
    assert [v.status_code for v in verdicts] == [200, 200]
    passed, failed = (v.json() for v in verdicts)
    assert passed["verified"] is True, passed["reasons"]
    assert passed["artifact"]["digest"] == good.digest
    assert failed["verified"] is False
    assert failed["signatures"][0]["checks"][0]["name"] == "bundle"


def _as_protobuf_json(signed: SignedBundle) -> SignedBundle:
    return replace(signed, bundle=protobuf_json(signed.bundle))


def test_first_entries_of_a_log_as_protobuf_json_under_gunicorn(
    start_service: ServiceFactory,
    registry: RegistryServer,
    sigstore_local: LocalSigstore,
    tmp_path: Path,
) -> None:
    """Found from outside: bundles for the first entry of a log, as sigstore-js writes them
    (no logIndex, no proof hashes), were refused. Made real here, from fresh local logs: as
    image referrers (a message signature and a DSSE attestation) and as a release file, they
    verify; a later entry with its logIndex left out (read as 0) does not."""
    fresh = FreshLogs(sigstore_local.ca)
    messages, statements = fresh.signer(), fresh.signer()
    with RegistrySigner(messages, registry.url) as images:
        image = images.image("e2e/first-of-log")
        first = _as_protobuf_json(messages.message_bundle(image.digest))
        images.attach_signed_bundle(image, first)
        images.attach_signed_bundle(
            image, _as_protobuf_json(statements.dsse_bundle(image.digest, reference=image.name))
        )
        twin = images.image("e2e/first-of-log-twin")
        later = _as_protobuf_json(messages.message_bundle(twin.digest))  # log index 1
        (entry,) = later.bundle["verificationMaterial"]["tlogEntries"]
        assert entry.pop("logIndex") == "1"
        images.attach_signed_bundle(twin, later)
    (entry,) = first.bundle["verificationMaterial"]["tlogEntries"]
    assert "logIndex" not in entry and "hashes" not in entry["inclusionProof"]
    root = tmp_path / "fresh-logs-root.json"
    root.write_bytes(fresh.trusted_root_json())
    policy = {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
    with start_service(trust_root_file=str(root)) as (_, client):
        verdict = client.post("/v1/verify", json={"image": image.reference, "policy": policy})
        assert verdict.status_code == 200, verdict.text
        found = verdict.json()
        assert found["verified"] is True, found["reasons"]
        signatures = found["signatures"]
        assert len(signatures) == 2 and all(s["verified"] for s in signatures), signatures
        assert [s["logEntry"]["logIndex"] for s in signatures] == [0, 0]
        refused = client.post("/v1/verify", json={"image": twin.reference, "policy": policy})
        assert refused.status_code == 200 and refused.json()["verified"] is False
        released = client.post(
            "/v1/verify/bundle",
            json={"bundle": first.bundle, "artifactDigest": image.digest, "policy": policy},
        )
        assert released.status_code == 200 and released.json()["verified"] is True
