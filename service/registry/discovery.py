"""Signature discovery: where cosign and Sigstore put signatures next to an image.

For the image digest `<alg>:<hex>` (the digest asked for: an index's own digest for a
multi-platform image, as cosign signs it):

1. the cosign signature tag `<alg>-<hex>.sig`: an image manifest whose layers are simple-signing
   payloads, the signature and certificate in each layer's annotations;
2. the cosign attestation tag `<alg>-<hex>.att`: layers are DSSE envelopes;
3. Sigstore bundles attached as OCI 1.1 referrers (`subject` = the image):
   `GET /v2/<repo>/referrers/<digest>?artifactType=<bundle type>`, and where the registry has no
   referrers API (404), the referrers tag schema: an OCI index at tag `<alg>-<hex>`.

Every manifest and blob is fetched by digest and hashed. A referrer must name the image as its
`subject` and have the bundle artifact type, whatever the index listing it says.

Limit: at most `max_signatures` signature layers (and referrer candidates) in all. Beyond that,
`LimitExceeded` is raised: dropping some silently could drop the one valid signature a policy
needs (or hide that a threshold was met), so the caller gets an explicit error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from service.registry.client import RegistryClient, ResolvedImage
from service.registry.errors import LimitExceeded, NotFound
from service.registry.manifest import Descriptor, Manifest
from service.registry.reference import ImageReference

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
MAX_TAG_LENGTH = 128

ArtifactKind = Literal["cosign-signature", "cosign-attestation", "sigstore-bundle"]


@dataclass(frozen=True)
class Layer:
    """One signature layer: its bytes (digest-checked) and the descriptor's annotations."""

    media_type: str
    digest: str
    data: bytes
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Artifact:
    """A signature artifact: a `.sig`/`.att` manifest or one bundle referrer."""

    kind: ArtifactKind
    source: str  # "tag:sha256-<hex>.sig", "tag:sha256-<hex>.att", "referrers-api", "referrers-tag"
    manifest_digest: str
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Discovery:
    """Every signature artifact found for `digest`, in discovery order.

    `referrers` says how bundles were looked up: "api" (the referrers API answered),
    "tag" (fallback to the referrers tag schema).
    """

    digest: str
    artifacts: tuple[Artifact, ...]
    referrers: Literal["api", "tag"]

    def of_kind(self, kind: ArtifactKind) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if a.kind == kind)

    @property
    def layer_count(self) -> int:
        return sum(len(a.layers) for a in self.artifacts)


def digest_tag(digest: str, suffix: str = "") -> str | None:
    """`sha256:<hex>` → `sha256-<hex><suffix>`, or None when that is no valid tag (sha512)."""
    tag = digest.replace(":", "-", 1) + suffix
    return tag if len(tag) <= MAX_TAG_LENGTH else None


def referrers_tag(digest: str) -> str:
    """The referrers tag schema: `<alg>-<ref>`, algorithm cut to 32 and encoding to 64 chars."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


class _Budget:
    def __init__(self, limit: int, digest: str) -> None:
        self.limit = limit
        self.used = 0
        self.digest = digest

    def take(self, count: int, what: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise LimitExceeded(
                f"{self.digest}: more than {self.limit} signatures and attestations "
                f"(at {what}); raise max_signatures to verify this image"
            )


def discover(client: RegistryClient, resolved: ResolvedImage) -> Discovery:
    """Find the image's cosign signatures, attestations and Sigstore bundle referrers."""
    image = resolved.reference
    digest = resolved.digest
    budget = _Budget(client.config.max_signatures, digest)
    artifacts: list[Artifact] = []
    # (1), (2): cosign's tag conventions.
    kinds: tuple[tuple[ArtifactKind, str], ...] = (
        ("cosign-signature", ".sig"),
        ("cosign-attestation", ".att"),
    )
    for kind, suffix in kinds:
        tag = digest_tag(digest, suffix)
        if tag is None:
            continue
        artifact = _tagged(client, image, tag, kind, budget)
        if artifact is not None:
            artifacts.append(artifact)
    # (3): OCI 1.1 referrers, through the API or the tag schema.
    found, how = _referrers(client, image, digest, budget)
    artifacts.extend(found)
    return Discovery(digest=digest, artifacts=tuple(artifacts), referrers=how)


def _tagged(
    client: RegistryClient, image: ImageReference, tag: str, kind: ArtifactKind, budget: _Budget
) -> Artifact | None:
    try:
        manifest = client.get_manifest(image, tag)
    except NotFound:
        return None
    if manifest.is_index:
        log.warning("%s:%s is an index, not a signature manifest; ignored", image.name, tag)
        return None
    budget.take(len(manifest.layers), f"tag {tag}")
    layers = tuple(_layer(client, image, desc) for desc in manifest.layers)
    return Artifact(kind=kind, source=f"tag:{tag}", manifest_digest=manifest.digest, layers=layers)


def _layer(client: RegistryClient, image: ImageReference, desc: Descriptor) -> Layer:
    data = client.get_blob(image, desc.digest, expected_size=desc.size)
    return Layer(
        media_type=desc.media_type, digest=desc.digest, data=data, annotations=desc.annotations
    )


def _referrers(
    client: RegistryClient, image: ImageReference, digest: str, budget: _Budget
) -> tuple[list[Artifact], Literal["api", "tag"]]:
    how: Literal["api", "tag"]
    index: Manifest | None
    answer = client.get_referrers(image, digest, BUNDLE_ARTIFACT_TYPE)
    if answer is not None:
        # Whether or not the server applied the filter (OCI-Filters-Applied), the listing is
        # filtered here too: a server may ignore the parameter, and the tag schema has none.
        index, _filtered = answer
        source, how = "referrers-api", "api"
    else:
        source, how = "referrers-tag", "tag"
        try:
            index = client.get_manifest(image, referrers_tag(digest))
        except NotFound:
            index = None
        if index is not None and not index.is_index:
            log.warning("%s: referrers tag is not an index; ignored", image.name)
            index = None
    if index is None:
        return [], how
    candidates = [d for d in index.manifests if d.artifact_type in {BUNDLE_ARTIFACT_TYPE, None}]
    if budget.used + len(candidates) > budget.limit:
        budget.take(len(candidates), f"{source} listing")
    out: list[Artifact] = []
    for desc in candidates:
        manifest = client.get_manifest(image, desc.digest)
        if manifest.is_index or manifest.artifact_type != BUNDLE_ARTIFACT_TYPE:
            continue
        subject = manifest.subject
        if subject is None or subject.digest != digest:
            log.warning("%s: referrer %s has another subject; ignored", image.name, desc.digest)
            continue
        bundle_layers = [d for d in manifest.layers if d.media_type == BUNDLE_ARTIFACT_TYPE]
        budget.take(len(bundle_layers), f"referrer {desc.digest}")
        layers = tuple(_layer(client, image, d) for d in bundle_layers)
        if layers:
            out.append(Artifact("sigstore-bundle", source, manifest.digest, layers))
    return out, how
