"""What `RegistrySigner` writes into a real registry reads back as cosign's layouts, and the
project's verification core verifies it with evidence fetched from the local Rekor over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from service.core import (
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    ImageResult,
    LogEntry,
    LogLookup,
    needed_log_lookups,
    policy_from_mapping,
    verify_image,
)
from service.core.inputs import Signature
from tests.oci import ALL_MANIFEST_TYPES, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.artifacts import BUNDLE_V03, DEFAULT_IDENTITY, DSSE_ENVELOPE
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, p256
from tests.sigstore_local.encoding import pem_public
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.signer import Image, RegistrySigner

KEYLESS = {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}


class Reader:
    """Reads a registry as a verifier would (every manifest type accepted, digests checked)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)

    def manifest(self, repo: str, ref: str) -> tuple[dict[str, Any], str, bytes]:
        response = self.client.get(
            f"/v2/{repo}/manifests/{ref}", headers={"accept": ALL_MANIFEST_TYPES}
        )
        response.raise_for_status()
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        assert response.headers["docker-content-digest"] == digest
        return json.loads(response.content), digest, response.content

    def blob(self, repo: str, digest: str) -> bytes:
        response = self.client.get(f"/v2/{repo}/blobs/{digest}")
        response.raise_for_status()
        assert "sha256:" + hashlib.sha256(response.content).hexdigest() == digest
        return response.content

    def cosign_layers(self, image: Image, suffix: str) -> list[Signature]:
        """The layers of `sha256-<hex>.<suffix>` as the core's inputs."""
        manifest, _, _ = self.manifest(image.repository, image.tag_for(suffix))
        kinds = {DSSE_ENVELOPE: CosignAttestation}
        return [
            kinds.get(layer["mediaType"], CosignSignature)(
                payload=self.blob(image.repository, layer["digest"]),
                annotations=layer.get("annotations", {}),
                media_type=layer["mediaType"],
                layer_digest=layer["digest"],
                source=f"{image.name}:{image.tag_for(suffix)}",
            )
            for layer in manifest["layers"]
        ]

    def bundles(self, image: Image) -> list[Signature]:
        """Bundles listed in the referrers tag index, each checked to refer to `image`."""
        index, _, _ = self.manifest(image.repository, image.tag_for(""))
        assert index["mediaType"] == OCI_INDEX
        found: list[Signature] = []
        for item in index["manifests"]:
            assert item["artifactType"] == BUNDLE_V03
            manifest, digest, _ = self.manifest(image.repository, item["digest"])
            assert digest == item["digest"]
            assert manifest["subject"]["digest"] == image.digest
            (layer,) = manifest["layers"]
            found.append(
                BundleSignature(self.blob(image.repository, layer["digest"]), digest, "referrer")
            )
        return found

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def reader(registry: RegistryServer) -> Iterator[Reader]:
    reading = Reader(registry.url)
    yield reading
    reading.close()


@pytest.fixture
def reg(fresh_rekor: LocalSigstore, registry_signer: RegistrySigner) -> RegistrySigner:
    return registry_signer


def repo() -> str:
    return f"local/app-{secrets.token_hex(4)}"


def fetch_log_entries(
    url: str, signatures: Sequence[Signature]
) -> dict[LogLookup, tuple[LogEntry, ...]]:
    """What the orchestration does for `needed_log_lookups`, against the local Rekor."""
    found: dict[LogLookup, tuple[LogEntry, ...]] = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        for lookup in needed_log_lookups(signatures):
            if lookup.by == "logIndex":
                answers = [http.get("/api/v1/log/entries", params={"logIndex": lookup.value})]
            else:
                uuids = http.post("/api/v1/index/retrieve", json={"hash": lookup.value}).json()
                answers = [http.get(f"/api/v1/log/entries/{u}") for u in uuids]
            found[lookup] = tuple(
                LogEntry.from_rekor_response(a.json()) for a in answers if a.status_code == 200
            )
    return found


def verify(
    sigstore: LocalSigstore,
    image: Image,
    signatures: Sequence[Signature],
    policy: dict[str, Any],
    *,
    fetch: bool = True,
) -> ImageResult:
    return verify_image(
        image_digest=image.digest,
        signatures=signatures,
        log_entries=fetch_log_entries(sigstore.url, signatures) if fetch else {},
        policy=policy_from_mapping(policy),
        trust=sigstore.trust(),
        now=datetime.now(UTC),
    )


def failed(result: ImageResult) -> dict[str, str]:
    return {c.name: c.detail for s in result.signatures for c in s.checks if not c.passed}


# -- images ----------------------------------------------------------------------------------


def test_pushed_images_read_back(reg: RegistrySigner, reader: Reader) -> None:
    name = repo()
    image = reg.image(name, "v1")
    manifest, digest, raw = reader.manifest(name, "v1")
    assert (digest, raw) == (image.digest, image.manifest)
    assert manifest["mediaType"] == OCI_MANIFEST
    reader.blob(name, manifest["config"]["digest"])
    (layer,) = manifest["layers"]
    assert reader.blob(name, layer["digest"]).startswith(b"sigstore-local layer ")
    assert image.reference == f"{reg.registry}/{name}@{image.digest}"
    assert image.tag_reference == f"{reg.registry}/{name}:v1"

    multi = reg.multi_platform_image(name, "multi")
    index, digest, _ = reader.manifest(name, "multi")
    assert (digest, index["mediaType"]) == (multi.digest, OCI_INDEX)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert [m["digest"] for m in index["manifests"]] == [p.digest for p in multi.platforms]
    for platform in multi.platforms:
        assert reader.manifest(name, platform.digest)[1] == platform.digest


# -- cosign .sig -----------------------------------------------------------------------------


def test_keyless_signature_in_the_cosign_layout_verifies(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    attached = reg.sign(image)
    assert attached.tag == image.digest.replace(":", "-") + ".sig"
    manifest, digest, _ = reader.manifest(image.repository, attached.tag)
    assert digest == attached.manifest_digest
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert set(layer["annotations"]) == {
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/bundle",
    }
    payload = json.loads(reader.blob(image.repository, layer["digest"]))
    assert payload["critical"] == {
        "identity": {"docker-reference": image.name},
        "image": {"docker-manifest-digest": image.digest},
        "type": "cosign container image signature",
    }
    config = json.loads(reader.blob(image.repository, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    # the bundle annotation names an entry that is really in the log
    bundle = json.loads(layer["annotations"]["dev.sigstore.cosign/bundle"])
    index = bundle["Payload"]["logIndex"]
    served = httpx.get(f"{fresh_rekor.url}/api/v1/log/entries", params={"logIndex": index})
    assert next(iter(served.json().values()))["body"] == bundle["Payload"]["body"]

    signatures = reader.cosign_layers(image, "sig")
    promise_only = verify(fresh_rekor, image, signatures, KEYLESS, fetch=False)
    assert promise_only.verified, promise_only.reasons
    (result,) = promise_only.signatures
    assert result.log_entry is not None and result.log_entry.evidence == "inclusion-promise"
    with_proof = verify(fresh_rekor, image, signatures, KEYLESS)
    assert with_proof.verified, with_proof.reasons
    (result,) = with_proof.signatures
    assert result.log_entry is not None and result.log_entry.evidence == "inclusion-proof"
    assert result.log_entry.log_index == index
    other = {**KEYLESS, "certificateIdentity": "mallory@example.com"}
    assert set(failed(verify(fresh_rekor, image, signatures, other))) == {"identity"}


def test_several_signatures_share_one_sig_manifest(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    first = reg.sign(image)
    second = reg.sign(image, identity=reg.signer.identity("release-bot@example.com"))
    assert first.layer is not None
    again = reg.attach(image, "sig", first.layer)  # the same signature is not added twice
    manifest, digest, _ = reader.manifest(image.repository, first.tag)
    assert digest == again.manifest_digest != first.manifest_digest
    assert len(manifest["layers"]) == 2
    config = json.loads(reader.blob(image.repository, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]
    assert second.certificate is not None
    policy = {
        "identities": [KEYLESS, {"certificateIdentity": "release-bot@example.com",
                                 "certificateOidcIssuer": ACTIONS}],
        "threshold": 2,
    }  # fmt: skip
    result = verify(fresh_rekor, image, reader.cosign_layers(image, "sig"), policy)
    assert result.verified, result.reasons
    assert len(result.signers) == 2


def test_key_signatures_with_and_without_a_log_entry(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    key = p256()
    policy = {"keys": [pem_public(key.public_key())]}
    logged_image, offline_image = reg.image(repo()), reg.image(repo())
    logged = reg.sign_with_key(logged_image, key, tlog=True)
    offline = reg.sign_with_key(offline_image, key)
    assert logged.entry is not None and offline.entry is None
    layers = reader.cosign_layers(logged_image, "sig")
    assert "dev.sigstore.cosign/certificate" not in layers[0].annotations  # type: ignore[union-attr]
    result = verify(fresh_rekor, logged_image, layers, policy)
    assert result.verified, result.reasons
    unlogged = reader.cosign_layers(offline_image, "sig")
    assert "transparency-log" in failed(verify(fresh_rekor, offline_image, unlogged, policy))
    no_log = {**policy, "transparencyLog": {"required": False}}
    result = verify(fresh_rekor, offline_image, unlogged, no_log)
    assert result.verified, result.reasons


def test_signature_for_another_digest_or_from_another_ca_is_rejected(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    reg.sign(image, payload=artifacts.simple_signing("sha256:" + "e" * 64, image.name))
    assert set(failed(verify(fresh_rekor, image, reader.cosign_layers(image, "sig"), KEYLESS))) == {
        "image-digest"
    }
    image = reg.image(repo())
    rogue = CertificateAuthority(ct_key=fresh_rekor.ca.ct_key, clock=fresh_rekor.clock)
    reg.sign(image, identity=reg.signer.identity(ca=rogue))
    problems = failed(verify(fresh_rekor, image, reader.cosign_layers(image, "sig"), KEYLESS))
    assert set(problems) == {"certificate-chain"}


def test_multi_platform_index_is_signed_by_its_own_digest(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    multi = reg.multi_platform_image(repo())
    reg.sign(multi)
    result = verify(fresh_rekor, multi, reader.cosign_layers(multi, "sig"), KEYLESS)
    assert result.verified, result.reasons
    platform = multi.platforms[0]
    missing = reader.client.get(
        f"/v2/{platform.repository}/manifests/{platform.tag_for('sig')}",
        headers={"accept": ALL_MANIFEST_TYPES},
    )
    assert missing.status_code == 404


# -- cosign .att -----------------------------------------------------------------------------


def test_attestation_in_the_cosign_layout_verifies(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    attached = reg.attest(image, predicate={"builder": {"id": "local"}})
    manifest, _, _ = reader.manifest(image.repository, attached.tag)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == DSSE_ENVELOPE
    assert layer["annotations"]["predicateType"] == "https://slsa.dev/provenance/v1"
    assert layer["annotations"]["dev.cosignproject.cosign/signature"] == ""
    envelope = json.loads(reader.blob(image.repository, layer["digest"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"] == {"sha256": image.digest[7:]}
    assert attached.entry is not None and attached.entry.kind == ("dsse", "0.0.1")
    attestations = reader.cosign_layers(image, "att")
    result = verify(
        fresh_rekor, image, attestations, {**KEYLESS, "acceptAttestationsAsSignatures": True}
    )
    assert result.verified, result.reasons
    # an attestation is not a signature: `cosign verify` says this image has none
    assert not verify(fresh_rekor, image, attestations, KEYLESS).verified


# -- Sigstore bundles as referrers -----------------------------------------------------------


def test_bundles_attached_through_the_referrers_tag_schema_verify(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    message = reg.attach_bundle(image)
    dsse = reg.attach_bundle(image, dsse=True)
    # the registry has no referrers API: the tag schema is the only way to find them
    api = reader.client.get(f"/v2/{image.repository}/referrers/{image.digest}")
    assert api.status_code == 404
    index, index_digest, _ = reader.manifest(image.repository, image.tag_for(""))
    assert index_digest == dsse.index_digest != message.index_digest
    assert [m["digest"] for m in index["manifests"]] == [
        message.manifest_digest,
        dsse.manifest_digest,
    ]
    assert [m["annotations"]["dev.sigstore.bundle.content"] for m in index["manifests"]] == [
        "message-signature",
        "dsse-envelope",
    ]
    manifest, _, _ = reader.manifest(image.repository, dsse.manifest_digest)
    assert manifest["artifactType"] == BUNDLE_V03
    assert manifest["config"] == {
        "mediaType": OCI_EMPTY,
        "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
    }
    assert manifest["subject"] == {
        "mediaType": OCI_MANIFEST,
        "digest": image.digest,
        "size": image.size,
    }
    assert manifest["annotations"]["dev.sigstore.bundle.predicateType"] == (
        "https://slsa.dev/provenance/v1"
    )
    bundles = reader.bundles(image)
    result = verify(fresh_rekor, image, bundles, KEYLESS)
    assert result.verified, result.reasons
    assert [s.kind for s in result.signatures] == ["sigstore-bundle", "sigstore-bundle"]
    assert all(s.verified for s in result.signatures)
    assert fresh_rekor.requests["getLogEntryByIndex"] == 0  # bundles carry their own proof


def test_bundle_over_another_digest_is_rejected(
    reg: RegistrySigner, reader: Reader, fresh_rekor: LocalSigstore
) -> None:
    image = reg.image(repo())
    reg.attach_bundle(image, signed_digest="sha256:" + "e" * 64)
    result = verify(fresh_rekor, image, reader.bundles(image), KEYLESS)
    assert not result.verified
    assert "digest mismatch" in failed(result)["bundle"]
