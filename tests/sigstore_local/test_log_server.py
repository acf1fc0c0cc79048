"""The Rekor HTTP API: shapes as Rekor answers them, read by the project's core and by
sigstore-python's own Rekor client; validation on upload; counters and failure switches."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sigstore._internal.rekor.client import RekorClient
from sigstore._internal.trust import KeyringPurpose
from sigstore.hashes import Hashed
from sigstore.models import TrustedRoot
from sigstore_models.common.v1 import HashAlgorithm

from service.cache import MemoryCache
from service.core import LogEntry
from service.core.rekor import Checkpoint, merkle_root, verify_inclusion_proof, verify_set
from service.tlog.rekor import RekorClient as ServiceRekorClient
from tests.sigstore_local import artifacts, merkle
from tests.sigstore_local.ca import p256
from tests.sigstore_local.encoding import b64, pem_public, sha256_hex, spki
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.log import TransparencyLog, tamper
from tests.sigstore_local.server import RekorServer
from tests.sigstore_local.signer import HttpRekor, Signer


@pytest.fixture
def http(fresh_rekor: LocalSigstore) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh_rekor.url, timeout=10) as client:
        yield client


def new_digest() -> str:
    return "sha256:" + secrets.token_hex(32)


def core_entry(response: dict[str, Any]) -> LogEntry:
    return LogEntry.from_rekor_response(response)


def test_log_info_and_its_signed_checkpoint(fresh_rekor: LocalSigstore, http: httpx.Client) -> None:
    fresh_rekor.signer.message_bundle(new_digest())
    info = http.get("/api/v1/log").json()
    assert set(info) == {"inactiveShards", "rootHash", "signedTreeHead", "treeID", "treeSize"}
    assert info["treeSize"] == fresh_rekor.log.size >= 1
    assert info["rootHash"] == fresh_rekor.log.root_hash().hex()
    assert info["treeID"] == str(fresh_rekor.log.tree_id)
    checkpoint = Checkpoint.from_text(info["signedTreeHead"])
    assert checkpoint.origin == f"{fresh_rekor.log.hostname} - {info['treeID']}"
    assert (checkpoint.size, checkpoint.root_hash.hex()) == (info["treeSize"], info["rootHash"])
    pem = http.get("/api/v1/log/publicKey")
    assert pem.headers["content-type"] == "application/x-pem-file"
    key = load_pem_public_key(pem.content)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert sha256_hex(spki(key)) == fresh_rekor.log.log_id
    ((_name, hint, signature),) = checkpoint.signatures
    assert hint == bytes.fromhex(fresh_rekor.log.log_id)[:4]
    key.verify(signature, checkpoint.note, ec.ECDSA(hashes.SHA256()))  # raises if invalid
    assert RekorClient(fresh_rekor.url).log.get().tree_size == info["treeSize"]


def test_entries_by_index_uuid_and_hash_verify_with_the_core(
    fresh_rekor: LocalSigstore, http: httpx.Client
) -> None:
    digest = new_digest()
    signed = fresh_rekor.signer.message_bundle(digest)
    for _ in range(4):  # the tree grows: proofs are then into the newer tree
        fresh_rekor.signer.message_bundle(new_digest())
    entry_id, index = signed.entry.uuid, signed.entry.log_index
    leaf = entry_id[16:]
    assert entry_id[:16] == fresh_rekor.log.entry_id_prefix and len(entry_id) == 80
    by_hash = http.post("/api/v1/index/retrieve", json={"hash": digest}).json()
    assert by_hash == [entry_id]
    answers = [
        http.get("/api/v1/log/entries", params={"logIndex": index}).json(),
        http.get(f"/api/v1/log/entries/{entry_id}").json(),
        http.get(f"/api/v1/log/entries/{leaf}").json(),
        *http.post("/api/v1/log/entries/retrieve", json={"entryUUIDs": [leaf]}).json(),
        *http.post("/api/v1/log/entries/retrieve", json={"logIndexes": [index]}).json(),
        *http.post(
            "/api/v1/log/entries/retrieve",
            json={"entries": [json.loads(signed.entry.body)]},
        ).json(),
    ]
    trust = fresh_rekor.trust()
    for answer in answers:
        entry = core_entry(answer)
        assert (entry.uuid, entry.log_index, entry.body) == (entry_id, index, signed.entry.body)
        assert entry.inclusion_proof is not None
        assert entry.inclusion_proof.tree_size == fresh_rekor.log.size
        assert "inclusion proof verified" in verify_inclusion_proof(entry, trust)
        assert entry.signed_entry_timestamp is not None
        verify_set(
            trust,
            signed_entry_timestamp=entry.signed_entry_timestamp,
            body=entry.body,
            integrated_time=entry.integrated_time,
            log_index=entry.log_index,
            log_id=entry.log_id,
        )


def test_entry_shape_is_rekors(fresh_rekor: LocalSigstore, http: httpx.Client) -> None:
    signed = fresh_rekor.signer.dsse_bundle(new_digest())
    answer = http.get(f"/api/v1/log/entries/{signed.entry.uuid}").json()
    ((uuid, value),) = answer.items()
    assert set(value) == {"body", "integratedTime", "logID", "logIndex", "verification"}
    assert set(value["verification"]) == {"inclusionProof", "signedEntryTimestamp"}
    proof = value["verification"]["inclusionProof"]
    assert set(proof) == {"checkpoint", "hashes", "logIndex", "rootHash", "treeSize"}
    body = base64.b64decode(value["body"])
    assert rfc8785.dumps(json.loads(body)) == body  # stored canonical, as Rekor does
    assert uuid[16:] == merkle.leaf_hash(body).hex()
    doc = json.loads(body)
    assert (doc["kind"], doc["apiVersion"]) == ("dsse", "0.0.1")
    assert set(doc["spec"]) == {"envelopeHash", "payloadHash", "signatures"}
    (sig,) = doc["spec"]["signatures"]
    assert base64.b64decode(sig["verifier"]).startswith(b"-----BEGIN CERTIFICATE-----")


def test_sigstore_pythons_rekor_client_reads_and_writes(fresh_rekor: LocalSigstore) -> None:
    """sigstore-python's own v1 client posts an entry, finds it, and verifies what it gets."""
    fresh_rekor.signer.message_bundle(new_digest())  # so the entry below has logIndex > 0
    client = RekorClient(fresh_rekor.url)
    identity = fresh_rekor.signer.identity()
    digest = bytes.fromhex(new_digest()[7:])
    signature = artifacts.sign_digest(identity.key, digest)
    hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
    request = client._build_hashed_rekord_request(hashed, signature, identity.certificate)
    created = client.create_entry(request)
    keyring = TrustedRoot.from_file(str(fresh_rekor.trusted_root_path)).rekor_keyring(
        KeyringPurpose.VERIFY
    )
    created._verify(keyring)
    index = int(created._inner.log_index)
    fetched = client.log.entries.get(log_index=index)
    fetched._verify(keyring)
    assert fetched._inner.canonicalized_body == created._inner.canonicalized_body
    assert fresh_rekor.requests["createLogEntry"] == 2
    assert fresh_rekor.requests["getLogEntryByIndex"] == 1


def test_uploads_are_validated_like_rekor(fresh_rekor: LocalSigstore, http: httpx.Client) -> None:
    identity = fresh_rekor.signer.identity()
    digest = new_digest()[7:]
    signature = artifacts.sign_digest(identity.key, bytes.fromhex(digest))
    good = artifacts.hashedrekord_proposal(digest, signature, identity.certificate)
    created = http.post("/api/v1/log/entries", json=good)
    assert created.status_code == 201
    (entry_id,) = created.json()
    assert created.headers["etag"] == entry_id
    assert created.headers["location"] == f"/api/v1/log/entries/{entry_id}"
    again = http.post("/api/v1/log/entries", json=good)
    assert again.status_code == 409
    assert entry_id in again.json()["message"]
    assert again.headers["location"].endswith(entry_id)
    other = artifacts.hashedrekord_proposal(new_digest()[7:], signature, identity.certificate)
    refused = http.post("/api/v1/log/entries", json=other)
    assert (refused.status_code, refused.json()["code"]) == (400, 400)
    assert "signature" in refused.json()["message"]
    rekord = {**good, "kind": "rekord"}
    assert http.post("/api/v1/log/entries", json=rekord).status_code == 400
    assert http.post("/api/v1/log/entries", content=b"{not json").status_code == 400
    # a DSSE envelope whose signature is not the verifier's
    statement = artifacts.in_toto_statement("sha256:" + digest)
    envelope, _sig = artifacts.dsse_envelope(statement, p256())
    wrong = artifacts.dsse_proposal(envelope, [identity.certificate])
    assert http.post("/api/v1/log/entries", json=wrong).status_code == 400
    # key-signed entries carry the PEM public key
    key = p256()
    keyed = artifacts.hashedrekord_proposal(
        digest, artifacts.sign_digest(key, bytes.fromhex(digest)), pem_public(key.public_key())
    )
    assert http.post("/api/v1/log/entries", json=keyed).status_code == 201
    assert fresh_rekor.requests["createLogEntry"] == 7


def test_lookups_of_absent_entries(fresh_rekor: LocalSigstore, http: httpx.Client) -> None:
    missing = "ab" * 32
    assert http.get(f"/api/v1/log/entries/{missing}").status_code == 404
    assert http.get(f"/api/v1/log/entries/{'0' * 16}{missing}").status_code == 404
    assert http.get("/api/v1/log/entries/not-hex").status_code == 400
    assert http.get("/api/v1/log/entries", params={"logIndex": 10**9}).status_code == 404
    assert http.get("/api/v1/log/entries", params={"logIndex": "x"}).status_code == 400
    retrieved = http.post("/api/v1/log/entries/retrieve", json={"entryUUIDs": [missing]})
    assert (retrieved.status_code, retrieved.json()) == (200, [])
    too_many = http.post("/api/v1/log/entries/retrieve", json={"logIndexes": list(range(11))})
    assert too_many.status_code == 422
    assert http.post("/api/v1/index/retrieve", json={"hash": new_digest()}).json() == []
    assert http.post("/api/v1/index/retrieve", json={"hash": "sha256:xyz"}).status_code == 400
    assert http.get("/api/v1/nothing").status_code == 404


def test_search_by_email_and_public_key(fresh_rekor: LocalSigstore, http: httpx.Client) -> None:
    email = f"{secrets.token_hex(4)}@example.com"
    signed = fresh_rekor.signer.message_bundle(
        new_digest(), identity=fresh_rekor.signer.identity(email)
    )
    assert http.post("/api/v1/index/retrieve", json={"email": email.upper()}).json() == [
        signed.entry.uuid
    ]
    key = {"format": "x509", "content": b64(artifacts.signer_pem(signed.certificate))}
    assert http.post("/api/v1/index/retrieve", json={"publicKey": key}).json() == [
        signed.entry.uuid
    ]
    both = {"publicKey": key, "hash": new_digest(), "operator": "and"}
    assert http.post("/api/v1/index/retrieve", json=both).json() == []
    either = {**both, "operator": "or"}
    assert http.post("/api/v1/index/retrieve", json=either).json() == [signed.entry.uuid]


def test_request_counts_and_failure_switches(
    fresh_rekor: LocalSigstore, http: httpx.Client
) -> None:
    server = fresh_rekor.server
    assert fresh_rekor.requests.total == 0
    http.get("/api/v1/log")
    http.get("/api/v1/log/entries", params={"logIndex": 0})
    http.get("/api/v1/log/entries", params={"logIndex": 0})
    assert fresh_rekor.requests.snapshot() == {"getLogInfo": 1, "getLogEntryByIndex": 2}
    assert fresh_rekor.requests.history[0] == ("GET", "/api/v1/log")
    server.fail_with, server.retry_after = 503, 2
    outage = http.get("/api/v1/log")
    assert (outage.status_code, outage.headers["retry-after"]) == (503, "2")
    assert fresh_rekor.requests["getLogInfo"] == 2  # failed requests count too
    server.fail_with, server.fail_times = 500, 1
    assert http.get("/api/v1/log").status_code == 500
    assert http.get("/api/v1/log").status_code == 200  # one failure, then recovered
    server.fail_with, server.fail_times, server.fail_only = 429, None, {"getLogEntryByIndex"}
    assert http.get("/api/v1/log").status_code == 200
    assert http.get("/api/v1/log/entries", params={"logIndex": 0}).status_code == 429
    server.heal()
    server.delay = 0.3
    start = time.monotonic()
    assert http.get("/api/v1/log").status_code == 200
    assert time.monotonic() - start >= 0.3
    server.heal()
    fresh_rekor.requests.reset()
    assert fresh_rekor.requests.total == 0 and fresh_rekor.requests.history == []


def test_served_tampering_is_caught_by_the_core(
    fresh_rekor: LocalSigstore, http: httpx.Client
) -> None:
    fresh_rekor.signer.message_bundle(new_digest())
    signed = fresh_rekor.signer.message_bundle(new_digest())
    index, trust = signed.entry.log_index, fresh_rekor.trust()

    def fetched() -> LogEntry:
        return core_entry(http.get("/api/v1/log/entries", params={"logIndex": index}).json())

    assert "inclusion proof verified" in verify_inclusion_proof(fetched(), trust)
    size = fresh_rekor.log.size
    fresh_rekor.log.tamper(
        index, hashes=[b"\x00" * 32] * len(signed.entry.inclusion_proof["hashes"])
    )
    with pytest.raises(Exception, match="inclusion proof gives root"):
        verify_inclusion_proof(fetched(), trust)
    fresh_rekor.log.tamper(index, checkpoint=fresh_rekor.log.checkpoint(size - 1))
    with pytest.raises(Exception, match=f"checkpoint is for size {size - 1}"):
        verify_inclusion_proof(fetched(), trust)
    other_key = p256()
    fresh_rekor.log.tamper(index, checkpoint=fresh_rekor.log.checkpoint(size, key=other_key))
    with pytest.raises(Exception, match="checkpoint has no valid signature"):
        verify_inclusion_proof(fetched(), trust)
    fresh_rekor.log.clear_tampering()
    assert "inclusion proof verified" in verify_inclusion_proof(fetched(), trust)
    # the same, offline, on an answer already in hand
    answer = signed.entry.response
    bad = core_entry(tamper(answer, root_hash=b"\x01" * 32))
    with pytest.raises(Exception, match="inclusion proof gives root"):
        verify_inclusion_proof(bad, trust)


def test_sharded_log_numbers_entries_globally(fresh_rekor: LocalSigstore) -> None:
    """With earlier shards, logIndex is global and the proof's index is within this tree."""
    log = TransparencyLog(fresh_rekor.log.key, index_offset=1000, clock=fresh_rekor.clock)
    with RekorServer(log) as server:
        uploader = HttpRekor(server.url)
        signer = Signer(fresh_rekor.ca, uploader)
        signer.message_bundle(new_digest())
        signed = signer.message_bundle(new_digest())
        uploader.close()
        answer = httpx.get(f"{server.url}/api/v1/log/entries", params={"logIndex": 1001}).json()
    entry = core_entry(answer)
    assert (entry.log_index, signed.entry.log_index) == (1001, 1001)
    assert entry.inclusion_proof is not None and entry.inclusion_proof.log_index == 1
    assert "inclusion proof verified" in verify_inclusion_proof(entry, fresh_rekor.trust())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 17])
def test_inclusion_paths_agree_with_the_cores_rfc9162_verifier(size: int) -> None:
    leaves = [merkle.leaf_hash(b"entry %d" % i) for i in range(size)]
    root = merkle.root(leaves)
    for index in range(size):
        path = tuple(merkle.inclusion_path(index, leaves))
        assert merkle_root(leaves[index], index, size, path) == root
    if size > 1:
        wrong = tuple(merkle.inclusion_path(0, leaves))
        assert merkle_root(leaves[1], 1, size, wrong) != root


def test_frozen_clock_sets_issuance_and_integration_time(fresh_rekor: LocalSigstore) -> None:
    when = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    with fresh_rekor.clock.frozen(when):
        signed = fresh_rekor.signer.message_bundle(new_digest())
    assert signed.certificate.not_valid_before_utc == when
    assert signed.entry.integrated_time == int(when.timestamp())
    assert fresh_rekor.clock() > when


def test_the_services_rekor_client_reads_this_log(fresh_rekor: LocalSigstore) -> None:
    """The service's own client accepts every answer shape it asks this log for."""
    digest = new_digest()
    signed = fresh_rekor.signer.message_bundle(digest)
    client = ServiceRekorClient(fresh_rekor.url, MemoryCache(), retries=0, trust_env=False)
    by_index = client.entry_by_log_index(signed.entry.log_index)
    assert by_index is not None and core_entry(by_index).body == signed.entry.body
    assert client.entry_by_uuid(signed.entry.uuid) is not None
    assert client.search_by_hash(digest[7:]) == [signed.entry.uuid]
    (found,) = client.entries_by_uuids([signed.entry.uuid[16:]]).values()
    assert found is not None and core_entry(found).log_index == signed.entry.log_index
    assert client.entry_by_log_index(10**9) is None
    assert fresh_rekor.requests["getLogEntryByIndex"] == 2
