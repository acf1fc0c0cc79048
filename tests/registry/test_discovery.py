"""Signature discovery against the real registry (no referrers API: the tag schema is used)
and a small in-test registry on 127.0.0.1 that has the referrers API."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import pytest

from service.registry import (
    BUNDLE_ARTIFACT_TYPE,
    LimitExceeded,
    RegistryClient,
    ResolvedImage,
    discover,
    parse_reference,
)
from service.registry.discovery import DSSE_ENVELOPE, SIMPLE_SIGNING, digest_tag, referrers_tag
from tests.oci import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Descriptor, Pusher, canonical
from tests.oci import sha256_digest as digest_of
from tests.registry.conftest import ClientFactory
from tests.registry.helpers import HTTPServer, Reply
from tests.servers import RegistryServer

SIG_ANNOTATIONS = {
    "dev.cosignproject.cosign/signature": "MEUCIQ...",
    "dev.sigstore.cosign/bundle": "{}",
}


def simple_signing(image_digest: str, name: str) -> bytes:
    return canonical(
        {
            "critical": {
                "identity": {"docker-reference": name},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def push_layers_manifest(
    pusher: Pusher,
    repo: str,
    tag: str | None,
    layers: Sequence[tuple[bytes, str, Mapping[str, str]]],
    *,
    artifact_type: str | None = None,
    subject: Descriptor | None = None,
) -> Descriptor:
    """An OCI manifest with an empty config and the given layers (cosign's and oras' shape)."""
    config = pusher.blob(repo, b"{}", OCI_EMPTY)
    descs = []
    for data, media_type, notes in layers:
        d = pusher.blob(repo, data, media_type)
        descs.append(Descriptor(d.media_type, d.digest, d.size, annotations=notes).to_json())
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": descs,
    }
    if artifact_type:
        body["artifactType"] = artifact_type
    if subject is not None:
        body["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        }
    data = canonical(body)
    desc = pusher.manifest(repo, tag or digest_of(data), data, OCI_MANIFEST)
    return Descriptor(desc.media_type, desc.digest, desc.size, artifact_type=artifact_type)


def bundle_json(n: int) -> bytes:
    return canonical({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "n": n})


def attach_bundle(pusher: Pusher, repo: str, subject: Descriptor, n: int) -> Descriptor:
    return push_layers_manifest(
        pusher,
        repo,
        None,
        [(bundle_json(n), BUNDLE_ARTIFACT_TYPE, {})],
        artifact_type=BUNDLE_ARTIFACT_TYPE,
        subject=subject,
    )


def resolve(client: RegistryClient, registry: RegistryServer, repo: str, tag: str) -> ResolvedImage:
    return client.resolve(parse_reference(f"{registry.host}/{repo}:{tag}"))


def test_tags_and_referrers_tag(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    image = pusher.image(repo, "v1", layer=b"signed image")
    name = f"{registry.host}/{repo}"
    payload = simple_signing(image.digest, name)
    sig = push_layers_manifest(
        pusher, repo, digest_tag(image.digest, ".sig"), [(payload, SIMPLE_SIGNING, SIG_ANNOTATIONS)]
    )
    envelope = canonical(
        {"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []}
    )
    att = push_layers_manifest(
        pusher,
        repo,
        digest_tag(image.digest, ".att"),
        [(envelope, DSSE_ENVELOPE, {"predicateType": "x"})],
    )
    bundle = attach_bundle(pusher, repo, image, 1)
    # Other referrers in the same index: an SBOM (wrong type) and a bundle for another image.
    sbom = push_layers_manifest(
        pusher,
        repo,
        None,
        [(b"{}", "application/spdx+json", {})],
        artifact_type="application/spdx+json",
        subject=image,
    )
    other_image = pusher.image(repo, None, layer=b"another image")
    stray = attach_bundle(pusher, repo, other_image, 2)
    pusher.index(repo, referrers_tag(image.digest), [bundle, sbom, stray])

    client = make_client(registry.host)
    found = discover(client, resolve(client, registry, repo, "v1"))
    assert found.digest == image.digest
    assert found.referrers == "tag"  # distribution 2.8 has no referrers API
    assert [(a.kind, a.source, a.manifest_digest) for a in found.artifacts] == [
        ("cosign-signature", f"tag:{digest_tag(image.digest, '.sig')}", sig.digest),
        ("cosign-attestation", f"tag:{digest_tag(image.digest, '.att')}", att.digest),
        ("sigstore-bundle", "referrers-tag", bundle.digest),
    ]
    sig_layer = found.artifacts[0].layers[0]
    assert (sig_layer.media_type, sig_layer.data, sig_layer.digest) == (
        SIMPLE_SIGNING,
        payload,
        digest_of(payload),
    )
    assert dict(sig_layer.annotations) == SIG_ANNOTATIONS
    assert found.artifacts[1].layers[0].data == envelope
    assert found.artifacts[1].layers[0].annotations["predicateType"] == "x"
    assert found.artifacts[2].layers[0].data == bundle_json(1)
    assert found.layer_count == 3
    assert len(found.of_kind("sigstore-bundle")) == 1


def test_nothing_attached(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    pusher.image(repo, "v1", layer=b"unsigned")
    client = make_client(registry.host)
    found = discover(client, resolve(client, registry, repo, "v1"))
    assert found.artifacts == ()


def test_index_signatures_are_for_the_digest_asked(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    amd = pusher.image(repo, None, layer=b"amd", platform={"architecture": "amd64", "os": "linux"})
    index = pusher.index(repo, "multi", [amd])
    on_index = push_layers_manifest(
        pusher,
        repo,
        digest_tag(index.digest, ".sig"),
        [(simple_signing(index.digest, repo), SIMPLE_SIGNING, {})],
    )
    push_layers_manifest(
        pusher,
        repo,
        digest_tag(amd.digest, ".sig"),
        [(simple_signing(amd.digest, repo), SIMPLE_SIGNING, {})],
    )
    client = make_client(registry.host)
    resolved = resolve(client, registry, repo, "multi")
    assert resolved.is_index
    found = discover(client, resolved)
    assert [a.manifest_digest for a in found.artifacts] == [on_index.digest]
    # The platform manifest, asked for by its digest, has its own signature.
    platform = client.resolve(resolved.reference.with_digest(resolved.platforms[0]["digest"]))
    assert discover(client, platform).artifacts[0].layers[0].data == simple_signing(
        amd.digest, repo
    )


def test_max_signatures_is_an_error_not_a_truncation(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    image = pusher.image(repo, "v1", layer=b"many signatures")
    layers: list[tuple[bytes, str, Mapping[str, str]]] = [
        (simple_signing(image.digest, f"n{i}"), SIMPLE_SIGNING, {}) for i in range(3)
    ]
    push_layers_manifest(pusher, repo, digest_tag(image.digest, ".sig"), layers)
    bundles = [attach_bundle(pusher, repo, image, i) for i in range(2)]
    pusher.index(repo, referrers_tag(image.digest), bundles)
    resolved = resolve(make_client(registry.host), registry, repo, "v1")
    assert discover(make_client(registry.host, max_signatures=5), resolved).layer_count == 5
    with pytest.raises(LimitExceeded, match="more than 4 signatures"):
        discover(make_client(registry.host, max_signatures=4), resolved)
    with pytest.raises(LimitExceeded, match="more than 2 signatures"):
        discover(make_client(registry.host, max_signatures=2), resolved)


def test_oversized_signature_blob(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    image = pusher.image(repo, "v1", layer=b"big signature")
    push_layers_manifest(
        pusher, repo, digest_tag(image.digest, ".sig"), [(b"x" * 5000, SIMPLE_SIGNING, {})]
    )
    client = make_client(registry.host, max_blob_bytes=4096)
    with pytest.raises(LimitExceeded, match="4096-byte limit"):
        discover(client, resolve(client, registry, repo, "v1"))


# -- the referrers API, served by a small registry on 127.0.0.1 ------------------------------


def test_referrers_api(make_client: ClientFactory) -> None:
    image_manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2}, "layers": []})  # fmt: skip
    image_digest = digest_of(image_manifest)
    bundle = bundle_json(7)
    referrer = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_ARTIFACT_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
        "layers": [
            {"mediaType": BUNDLE_ARTIFACT_TYPE, "digest": digest_of(bundle), "size": len(bundle)}
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(image_manifest)},
    })  # fmt: skip
    listing = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(referrer), "size": len(referrer),
         "artifactType": BUNDLE_ARTIFACT_TYPE},
    ]})  # fmt: skip
    blobs = {digest_of(bundle): bundle}
    manifests = {image_digest: image_manifest, "v1": image_manifest, digest_of(referrer): referrer}
    queries: list[dict[str, list[str]]] = []

    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        url = urlsplit(path)
        kind, ref = url.path.rsplit("/", 2)[-2:]  # /v2/team/app/<kind>/<ref>
        if kind == "referrers" and ref == image_digest:
            queries.append(parse_qs(url.query))
            return 200, {"Content-Type": OCI_INDEX, "OCI-Filters-Applied": "artifactType"}, listing
        if kind == "manifests" and ref in manifests:
            body = manifests[ref]
            return (
                200,
                {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest_of(body)},
                body,
            )
        if kind == "blobs" and ref in blobs:
            return 200, {}, blobs[ref]
        return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'

    with HTTPServer(route) as server:
        client = make_client(server.host)
        resolved = client.resolve(parse_reference(f"{server.host}/team/app:v1"))
        found = discover(client, resolved)
    assert found.referrers == "api"
    assert [(a.kind, a.source, a.manifest_digest) for a in found.artifacts] == [
        ("sigstore-bundle", "referrers-api", digest_of(referrer))
    ]
    assert found.artifacts[0].layers[0].data == bundle
    assert queries == [{"artifactType": [BUNDLE_ARTIFACT_TYPE]}]
    assert json.loads(found.artifacts[0].layers[0].data)["n"] == 7
