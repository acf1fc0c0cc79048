"""`TrustRoot`, `LogEntry`, `needed_log_lookups` and the JSON shape of results."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from service.core import (
    CoreError,
    LogEntry,
    LogLookup,
    TrustRoot,
    needed_log_lookups,
    policy_from_mapping,
    verify_image,
)
from tests.core.data import PRODUCTION_ROOT, connaisseur_digest, connaisseur_signatures
from tests.core.fakes import NOW, FakeSigstore, keyless_layer

REKOR_V1 = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"


def test_production_root_is_the_one_shipped_in_sigstore_python() -> None:
    production = TrustRoot.production()
    assert production.digest == hashlib.sha256(PRODUCTION_ROOT.read_bytes()).hexdigest()
    assert production.sigstore_root is not None
    assert REKOR_V1 in production.rekor_logs
    assert production.rekor_logs[REKOR_V1].base_url == "https://rekor.sigstore.dev"
    assert len(production.certificate_authorities) == 2
    old, current = production.certificate_authorities
    assert old.validity.end is not None and old.validity.end.year == 2022
    assert current.validity.end is None and len(current.chain) == 2
    assert len(production.ct_logs) == 2
    assert production.timestamp_authorities


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "expected an object"),
        (b'{"mediaType": "x"}', "mediaType"),
        (
            b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}',
            "found no certificate authorities and no transparency logs",
        ),
        (
            b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",'
            b' "certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": "AAAA"}]},'
            b' "validFor": {"start": "2020-01-01T00:00:00Z"}}]}',
            "invalid DER certificate",
        ),
    ],
)
def test_bad_trust_roots_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(CoreError, match="trusted root") as info:
        TrustRoot.from_json(data)
    assert fragment in str(info.value)


def test_self_made_root_loads_in_sigstore_python_too() -> None:
    trust = FakeSigstore().trust()
    assert trust.sigstore_root is not None
    assert trust.sigstore_verifier is trust.sigstore_verifier


def test_log_entry_parsing_and_its_invariants() -> None:
    fake = FakeSigstore()
    signed = keyless_layer(fake, "sha256:" + "a" * 64)
    response = fake.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    entry = LogEntry.from_rekor_response(response)
    assert entry.body == signed.body
    assert entry.log_index == signed.log_index
    assert entry.inclusion_proof is not None and entry.inclusion_proof.tree_size == 7
    assert entry.signed_entry_timestamp is not None
    (uuid, value) = next(iter(response.items()))
    with pytest.raises(CoreError, match="leaf hash"):
        LogEntry.from_rekor_response({uuid: {**value, "body": base64.b64encode(b"{}").decode()}})
    with pytest.raises(CoreError, match="exactly one entry"):
        LogEntry.from_rekor_response({**response, "0" * 64: value})
    with pytest.raises(CoreError, match="logIndex"):
        LogEntry.from_rekor_response({uuid: {**value, "logIndex": "x"}})
    without_proof = LogEntry.from_rekor_response({uuid: {**value, "verification": {}}})
    assert without_proof.inclusion_proof is None and without_proof.signed_entry_timestamp is None


def test_needed_log_lookups() -> None:
    image = connaisseur_digest("keyless")
    keyless = connaisseur_signatures(image)
    multi = connaisseur_signatures(connaisseur_digest("multi-cosigned-alice-bob-charlie"))
    lookups = needed_log_lookups([*keyless, *keyless, *multi])
    assert lookups[0] == LogLookup("logIndex", "98235800")
    # the three key layers share one payload, so one search by its hash, asked once
    assert lookups[1:] == [LogLookup("hash", multi[0].layer_digest.split(":")[1])]
    assert hash(lookups[0]) == hash(LogLookup("logIndex", "98235800"))


def test_result_to_dict_is_camel_case_json() -> None:
    fake = FakeSigstore()
    image = "sha256:" + "a" * 64
    signed = keyless_layer(fake, image, extensions={2: "push", 12: "https://github.com/acme/app"})
    result = verify_image(
        image_digest=image,
        signatures=[signed.layer],
        log_entries={},
        policy=policy_from_mapping({"certificateIdentityRegexp": "acme"}),
        trust=fake.trust(),
        now=NOW,
    )
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["verified"] is True and doc["reasons"] == []
    (sig,) = doc["signatures"]
    assert set(sig) == {
        "kind",
        "role",
        "source",
        "digest",
        "verified",
        "checks",
        "signer",
        "certificate",
        "logEntry",
        "predicateType",
        "trustRoot",
        "reasons",
    }
    assert sig["kind"] == "cosign-signature" and sig["digest"] == signed.layer.layer_digest
    assert sig["role"] == "signature"
    assert all(set(c) == {"name", "passed", "detail"} for c in sig["checks"])
    cert = sig["certificate"]
    assert cert["issuer"] == "https://token.actions.githubusercontent.com"
    assert cert["extensions"]["githubWorkflowTrigger"] == "push"
    assert cert["extensions"]["sourceRepositoryUri"] == "https://github.com/acme/app"
    assert cert["notBefore"] == "2025-06-01T11:59:00Z"
    assert sig["logEntry"] == {
        "uuid": None,
        "logIndex": signed.log_index,
        "integratedTime": "2025-06-01T12:00:00Z",
        "logId": fake.rekor_log_id,
        "evidence": "inclusion-promise",
    }


def test_image_digest_must_be_a_digest() -> None:
    with pytest.raises(CoreError, match="image digest"):
        verify_image(
            image_digest="latest",
            signatures=[],
            log_entries={},
            policy=policy_from_mapping({"certificateIdentity": "a"}),
            trust=TrustRoot.production(),
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_key_signatures_need_no_lookup_when_the_policy_needs_no_log() -> None:
    keyless = connaisseur_signatures(connaisseur_digest("keyless"))
    keyed = connaisseur_signatures(connaisseur_digest("multi-cosigned-alice-bob-charlie"))
    assert needed_log_lookups(keyed, log_required=False) == []
    assert needed_log_lookups(keyed) != []
    # A certificate is only trustworthy through the log, whatever the policy says.
    assert needed_log_lookups(keyless, log_required=False) == needed_log_lookups(keyless) != []
