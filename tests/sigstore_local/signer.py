"""Signing as cosign does it, against the local CA and log, and into a real OCI registry.

`Signer` makes keyless identities (a fresh P-256 key and a Fulcio-style certificate), signs,
uploads the Rekor entry (through any uploader: the HTTP API for the live instance) and returns
what a client would store: cosign `.sig`/`.att` layers with their annotations, or Sigstore
bundles. `RegistrySigner` adds the registry: it pushes test images and attaches those results
the way cosign does (tag `sha256-<hex>.sig`/`.att`, layers appended to an existing manifest;
bundles as OCI referrers through the referrers tag schema).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from service.core import BundleSignature, CosignAttestation, CosignSignature
from tests.oci import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Descriptor, Pusher, canonical
from tests.sigstore_local import artifacts
from tests.sigstore_local.artifacts import (
    BUNDLE_V03,
    DEFAULT_IDENTITY,
    DSSE_ENVELOPE,
    IN_TOTO,
    SIMPLE_SIGNING,
    SLSA_PROVENANCE_V1,
)
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, SctMode, p256
from tests.sigstore_local.encoding import PrivateKey, pem_public, public_key_of, sha256_hex
from tests.sigstore_local.log import RekorEntry

Uploader = Callable[[Mapping[str, Any]], RekorEntry]


class UploadError(RuntimeError):
    """The log refused an entry; `status` and `body` are its answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"rekor answered {status}: {body[:300]}")
        self.status = status
        self.body = body


class HttpRekor:
    """Uploads entries as cosign does: `POST /api/v1/log/entries`, expecting 201."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, timeout=10)

    def __call__(self, proposed: Mapping[str, Any]) -> RekorEntry:
        response = self._client.post("/api/v1/log/entries", json=dict(proposed))
        if response.status_code != 201:
            raise UploadError(response.status_code, response.text)
        return RekorEntry.from_response(response.json())

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class KeylessIdentity:
    """A signing key and the short-lived certificate the CA issued for it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain_pem: str

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()


@dataclass(frozen=True)
class SignedLayer:
    """One cosign `.sig` or `.att` layer: the payload blob, its media type and annotations."""

    payload: bytes
    media_type: str
    annotations: dict[str, str]
    key: PrivateKey
    certificate: x509.Certificate | None = None
    entry: RekorEntry | None = None

    @property
    def layer_digest(self) -> str:
        return "sha256:" + sha256_hex(self.payload)

    @property
    def uuid(self) -> str | None:
        return None if self.entry is None else self.entry.uuid

    @property
    def log_index(self) -> int | None:
        return None if self.entry is None else self.entry.log_index

    def as_core(self, source: str = "sigstore-local") -> CosignSignature | CosignAttestation:
        """The layer as the verification core takes it."""
        kind = CosignAttestation if self.media_type == DSSE_ENVELOPE else CosignSignature
        return kind(
            payload=self.payload,
            annotations=dict(self.annotations),
            media_type=self.media_type,
            layer_digest=self.layer_digest,
            source=source,
        )


@dataclass(frozen=True)
class SignedBundle:
    """A Sigstore bundle v0.3 (as a JSON object: deep-copy it to tamper) and its parts."""

    bundle: dict[str, Any]
    content: Literal["message-signature", "dsse-envelope"]
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    entry: RekorEntry
    predicate_type: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(self.bundle, separators=(",", ":")).encode()

    def edited(self) -> dict[str, Any]:
        """A deep copy of the bundle object, to alter."""
        return copy.deepcopy(self.bundle)

    def as_core(self, manifest_digest: str = "", source: str = "sigstore-local") -> BundleSignature:
        return BundleSignature(self.to_json(), manifest_digest, source)


@dataclass
class Signer:
    """Signs with identities from `ca` and logs through `upload` (see module doc)."""

    ca: CertificateAuthority
    upload: Uploader

    def identity(
        self,
        san: str = DEFAULT_IDENTITY,
        *,
        issuer: str | None = ACTIONS,
        extensions: Mapping[int, str] | None = None,
        sct: SctMode = True,
        ca: CertificateAuthority | None = None,
        not_before: datetime | None = None,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> KeylessIdentity:
        """A fresh key certified for `san` by `ca` (default: this signer's CA)."""
        authority = ca or self.ca
        key = p256()
        cert = authority.issue(
            key,
            san=san,
            issuer=issuer,
            extensions=extensions,
            not_before=not_before,
            sct=sct,
            ct_key=ct_key,
        )
        return KeylessIdentity(key, cert, authority.chain_pem())

    def cosign_signature(
        self,
        image_digest: str,
        *,
        reference: str = "registry.example/app",
        identity: KeylessIdentity | None = None,
        key: PrivateKey | None = None,
        tlog: bool = True,
        bundle: bool = True,
        chain: bool = True,
        payload: bytes | None = None,
    ) -> SignedLayer:
        """A `cosign sign` layer for `image_digest`: keyless (default, or `identity`) or with
        `key`. `tlog` uploads a hashedrekord entry; `bundle` writes its SET annotation.
        `payload` replaces the simple-signing payload (e.g. one naming another digest)."""
        payload = (
            payload if payload is not None else artifacts.simple_signing(image_digest, reference)
        )
        signing_key, certificate, annotations = self._signer(identity, key, chain)
        signature = artifacts.sign(signing_key, payload)
        annotations[artifacts.SIGNATURE_ANNOTATION] = base64.b64encode(signature).decode()
        entry = None
        if tlog:
            signer_pem = certificate or pem_public(public_key_of(signing_key))
            entry = self.upload(
                artifacts.hashedrekord_proposal(sha256_hex(payload), signature, signer_pem)
            )
            if bundle:
                annotations[artifacts.BUNDLE_ANNOTATION] = artifacts.cosign_bundle_annotation(entry)
        return SignedLayer(
            payload,
            SIMPLE_SIGNING,
            dict(sorted(annotations.items())),
            signing_key,
            certificate,
            entry,
        )

    def cosign_attestation(
        self,
        image_digest: str,
        *,
        reference: str = "registry.example/app",
        predicate_type: str = SLSA_PROVENANCE_V1,
        predicate: Mapping[str, Any] | None = None,
        identity: KeylessIdentity | None = None,
        key: PrivateKey | None = None,
        tlog: bool = True,
        bundle: bool = True,
        subject_digest: str | None = None,
    ) -> SignedLayer:
        """A `cosign attest` layer: a DSSE envelope of an in-toto statement about the image
        (or `subject_digest`), logged as a dsse 0.0.1 entry."""
        statement = artifacts.in_toto_statement(
            subject_digest or image_digest,
            name=reference,
            predicate_type=predicate_type,
            predicate=predicate,
        )
        signing_key, certificate, annotations = self._signer(identity, key, True)
        envelope, _signature = artifacts.dsse_envelope(statement, signing_key)
        annotations[artifacts.SIGNATURE_ANNOTATION] = ""
        annotations[artifacts.PREDICATE_TYPE_ANNOTATION] = predicate_type
        entry = None
        if tlog:
            verifier = certificate or pem_public(public_key_of(signing_key))
            entry = self.upload(artifacts.dsse_proposal(envelope, [verifier]))
            if bundle:
                annotations[artifacts.BUNDLE_ANNOTATION] = artifacts.cosign_bundle_annotation(entry)
        return SignedLayer(
            envelope.encode(),
            DSSE_ENVELOPE,
            dict(sorted(annotations.items())),
            signing_key,
            certificate,
            entry,
        )

    def message_bundle(
        self,
        image_digest: str,
        *,
        identity: KeylessIdentity | None = None,
        signed_digest: str | None = None,
    ) -> SignedBundle:
        """A bundle whose message signature is over the image manifest digest (or
        `signed_digest`), logged as hashedrekord."""
        who = identity or self.identity()
        digest = bytes.fromhex((signed_digest or image_digest).split(":", 1)[1])
        signature = artifacts.sign_digest(who.key, digest)
        entry = self.upload(
            artifacts.hashedrekord_proposal(digest.hex(), signature, who.certificate)
        )
        bundle = artifacts.sigstore_bundle(
            who.certificate, entry, message_digest=digest, signature=signature
        )
        return SignedBundle(bundle, "message-signature", who.key, who.certificate, entry)

    def dsse_bundle(
        self,
        image_digest: str,
        *,
        reference: str = "registry.example/app",
        predicate_type: str = SLSA_PROVENANCE_V1,
        predicate: Mapping[str, Any] | None = None,
        identity: KeylessIdentity | None = None,
        subject_digest: str | None = None,
    ) -> SignedBundle:
        """A bundle with a DSSE envelope of an in-toto statement, logged as dsse 0.0.1."""
        who = identity or self.identity()
        statement = artifacts.in_toto_statement(
            subject_digest or image_digest,
            name=reference,
            predicate_type=predicate_type,
            predicate=predicate,
        )
        envelope, _signature = artifacts.dsse_envelope(statement, who.key, IN_TOTO)
        entry = self.upload(artifacts.dsse_proposal(envelope, [who.certificate]))
        bundle = artifacts.sigstore_bundle(who.certificate, entry, envelope=envelope)
        return SignedBundle(
            bundle, "dsse-envelope", who.key, who.certificate, entry, predicate_type
        )

    def _signer(
        self, identity: KeylessIdentity | None, key: PrivateKey | None, chain: bool
    ) -> tuple[PrivateKey, x509.Certificate | None, dict[str, str]]:
        if key is not None:
            return key, None, {}
        who = identity or self.identity()
        annotations = {artifacts.CERTIFICATE_ANNOTATION: who.certificate_pem}
        if chain:
            annotations[artifacts.CHAIN_ANNOTATION] = who.chain_pem
        return who.key, who.certificate, annotations


# -- the registry ----------------------------------------------------------------------------

REFERRERS_CONTENT = "dev.sigstore.bundle.content"
REFERRERS_PREDICATE = "dev.sigstore.bundle.predicateType"
CREATED = "org.opencontainers.image.created"
EMPTY_CONFIG = b"{}"


def push_bundle_referrer(
    pusher: Pusher,
    repo: str,
    subject: Descriptor,
    bundle: bytes,
    *,
    content: str,
    predicate_type: str | None = None,
    created: datetime | None = None,
) -> tuple[Descriptor, str, Descriptor]:
    """What cosign v3 does on a registry without the referrers API: the bundle as a referrer
    manifest of `subject`, listed in the referrers tag index `sha256-<hex>`. Returns the
    referrer, the tag and the index."""
    blob = pusher.blob(repo, bundle, BUNDLE_V03)
    empty = pusher.blob(repo, EMPTY_CONFIG, OCI_EMPTY)
    annotations: dict[str, str] = {REFERRERS_CONTENT: content}
    if predicate_type:
        annotations[REFERRERS_PREDICATE] = predicate_type
    when = created or datetime.now(UTC)
    annotations[CREATED] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_V03,
            "config": empty.to_json(),
            "layers": [blob.to_json()],
            "subject": subject.to_json(),
            "annotations": annotations,
        }
    )
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    pushed = pusher.manifest(repo, digest, manifest, OCI_MANIFEST)
    entry = Descriptor(
        OCI_MANIFEST, pushed.digest, pushed.size, annotations, artifact_type=BUNDLE_V03
    ).to_json()
    tag = subject.digest.replace(":", "-")
    listed: list[dict[str, Any]] = []
    existing = pusher.get_manifest(repo, tag)
    if existing.status_code == 200:
        listed = list(json.loads(existing.content).get("manifests", []))
    if all(item.get("digest") != pushed.digest for item in listed):
        listed.append(entry)
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed})
    return pushed, tag, pusher.manifest(repo, tag, index, OCI_INDEX)


@dataclass(frozen=True)
class Image:
    """An image (or index) in the registry, and how to refer to it."""

    registry: str  # host:port, as in image references
    repository: str
    tag: str | None
    digest: str
    media_type: str
    manifest: bytes = field(repr=False)
    platforms: tuple[Image, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """`host:port/repo@sha256:...`, digest-pinned."""
        return f"{self.name}@{self.digest}"

    @property
    def tag_reference(self) -> str:
        if self.tag is None:
            raise ValueError("this image was pushed by digest only")
        return f"{self.name}:{self.tag}"

    @property
    def size(self) -> int:
        return len(self.manifest)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)

    def tag_for(self, suffix: str) -> str:
        """cosign's tag for this digest: `sha256-<hex>` plus `.sig`/`.att` (or nothing)."""
        return self.digest.replace(":", "-") + (f".{suffix}" if suffix else "")


@dataclass(frozen=True)
class Attached:
    """Something attached to an image: the manifest that holds it and what it holds."""

    image: Image
    tag: str
    manifest_digest: str
    layer: SignedLayer | None = None
    bundle: SignedBundle | None = None
    index_digest: str | None = None  # the referrers index, for bundles

    @property
    def reference(self) -> str:
        """The signed image's digest-pinned reference."""
        return self.image.reference

    @property
    def digest(self) -> str:
        """The signed image's digest."""
        return self.image.digest

    @property
    def uuid(self) -> str | None:
        """The Rekor entry id (80 hex), if the signature was logged."""
        return None if self.entry is None else self.entry.uuid

    @property
    def log_index(self) -> int | None:
        return None if self.entry is None else self.entry.log_index

    @property
    def entry(self) -> RekorEntry | None:
        if self.layer is not None:
            return self.layer.entry
        return None if self.bundle is None else self.bundle.entry

    @property
    def certificate(self) -> x509.Certificate | None:
        if self.layer is not None:
            return self.layer.certificate
        return None if self.bundle is None else self.bundle.certificate


class RegistrySigner:
    """Pushes test images to a registry and attaches signatures as cosign does."""

    def __init__(
        self, signer: Signer, registry_url: str, auth: tuple[str, str] | None = None
    ) -> None:
        self.signer = signer
        self.pusher = Pusher(registry_url, auth=auth)
        self.registry = httpx.URL(registry_url).netloc.decode()

    def close(self) -> None:
        self.pusher.close()

    def __enter__(self) -> RegistrySigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images ------------------------------------------------------------------------------

    def _fetch(self, repo: str, ref: str) -> bytes:
        response = self.pusher.get_manifest(repo, ref)
        response.raise_for_status()
        return response.content

    def image(
        self,
        repo: str,
        tag: str | None = "latest",
        *,
        layer: bytes | None = None,
        platform: Mapping[str, str] | None = None,
    ) -> Image:
        """A single-platform OCI image (small config and one layer, unique unless `layer`)."""
        content = layer if layer is not None else b"sigstore-local layer " + secrets.token_bytes(16)
        desc = self.pusher.image(repo, tag, layer=content, platform=platform)
        manifest = self._fetch(repo, desc.digest)
        return Image(self.registry, repo, tag, desc.digest, OCI_MANIFEST, manifest)

    def multi_platform_image(
        self,
        repo: str,
        tag: str | None = "latest",
        platforms: Sequence[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    ) -> Image:
        """An OCI index over one image per (os, architecture); `platforms` are those images."""
        children = [
            self.image(repo, None, platform={"os": os_, "architecture": arch})
            for os_, arch in platforms
        ]
        descriptors = [
            Descriptor(c.media_type, c.digest, c.size, platform={"architecture": a, "os": o})
            for c, (o, a) in zip(children, platforms, strict=True)
        ]
        desc = self.pusher.index(repo, tag, descriptors)
        manifest = self._fetch(repo, desc.digest)
        return Image(self.registry, repo, tag, desc.digest, OCI_INDEX, manifest, tuple(children))

    # -- cosign signatures and attestations --------------------------------------------------

    def sign(self, image: Image, **options: Any) -> Attached:
        """`cosign sign`: a keyless signature (options as `Signer.cosign_signature`) appended
        to the image's `.sig` manifest."""
        layer = self.signer.cosign_signature(image.digest, reference=image.name, **options)
        return self.attach(image, "sig", layer)

    def sign_with_key(
        self, image: Image, key: PrivateKey | None = None, *, tlog: bool = False, **options: Any
    ) -> Attached:
        """`cosign sign --key`: with `key` (default: a fresh P-256 key), no log entry unless
        `tlog`."""
        layer = self.signer.cosign_signature(
            image.digest, reference=image.name, key=key or p256(), tlog=tlog, **options
        )
        return self.attach(image, "sig", layer)

    def attest(self, image: Image, **options: Any) -> Attached:
        """`cosign attest`: options as `Signer.cosign_attestation`, appended to `.att`."""
        layer = self.signer.cosign_attestation(image.digest, reference=image.name, **options)
        return self.attach(image, "att", layer)

    def attach(self, image: Image, suffix: Literal["sig", "att"], layer: SignedLayer) -> Attached:
        """Append `layer` to the manifest at `sha256-<hex>.<suffix>` (creating it), as cosign
        does: an OCI manifest whose config lists every layer's diff id. An identical layer
        already there is not added twice."""
        repo, tag = image.repository, image.tag_for(suffix)
        layers: list[dict[str, Any]] = []
        existing = self.pusher.get_manifest(repo, tag)
        if existing.status_code == 200:
            layers = list(json.loads(existing.content).get("layers", []))
        blob = self.pusher.blob(repo, layer.payload, layer.media_type)
        descriptor = Descriptor(
            layer.media_type, blob.digest, blob.size, layer.annotations
        ).to_json()
        if descriptor not in layers:
            layers.append(descriptor)
        config = canonical(
            {
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [item["digest"] for item in layers]},
                "config": {},
            }
        )
        config_desc = self.pusher.blob(repo, config, "application/vnd.oci.image.config.v1+json")
        manifest = canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_desc.to_json(),
                "layers": layers,
            }
        )
        pushed = self.pusher.manifest(repo, tag, manifest, OCI_MANIFEST)
        return Attached(image, tag, pushed.digest, layer=layer)

    # -- Sigstore bundles as OCI referrers ---------------------------------------------------

    def attach_bundle(
        self, image: Image, *, dsse: bool = False, created: datetime | None = None, **options: Any
    ) -> Attached:
        """`cosign sign/attest --new-bundle-format` on a registry without the referrers API:
        a message-signature (or, with `dsse`, a DSSE) bundle, options as `Signer`."""
        if dsse:
            signed = self.signer.dsse_bundle(image.digest, reference=image.name, **options)
        else:
            signed = self.signer.message_bundle(image.digest, **options)
        return self.attach_signed_bundle(image, signed, created=created)

    def attach_signed_bundle(
        self, image: Image, signed: SignedBundle, *, created: datetime | None = None
    ) -> Attached:
        """Push `signed` as a referrer of `image` and list it in the referrers tag index."""
        pushed, tag, index_desc = push_bundle_referrer(
            self.pusher,
            image.repository,
            image.descriptor(),
            signed.to_json(),
            content=signed.content,
            predicate_type=signed.predicate_type,
            created=created,
        )
        return Attached(image, tag, pushed.digest, bundle=signed, index_digest=index_desc.digest)
