"""Manifests and descriptors, parsed from the exact bytes the registry served.

A `Manifest` keeps those bytes: its digest is computed from them and checked against the digest
it was fetched by, and signatures are verified over them, never over re-serialised JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from service.registry.errors import DigestMismatch, InvalidManifest, InvalidReference
from service.registry.reference import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)

_EMPTY: Mapping[str, str] = MappingProxyType({})


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """`<algorithm>:<hex>` of `data` (sha256 or sha512)."""
    if algorithm not in {"sha256", "sha512"}:
        raise InvalidReference(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, digest: str, what: str) -> None:
    """Raise `DigestMismatch` unless `data` hashes to `digest`."""
    actual = compute_digest(data, digest.partition(":")[0])
    if actual != digest:
        raise DigestMismatch(f"{what}: content hashes to {actual}, expected {digest}")


def _str_map(value: Any, what: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifest(f"{what}: expected an object of strings")
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the parts this client uses)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    artifact_type: str | None = None
    platform: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def from_json(cls, obj: Any, what: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{what}: descriptor is not an object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifest(f"{what}: descriptor has no mediaType")
        if not isinstance(digest, str):
            raise InvalidManifest(f"{what}: descriptor has no digest")
        try:
            check_digest(digest)
        except InvalidReference as exc:
            raise InvalidManifest(f"{what}: {exc}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{what}: descriptor size must be a non-negative integer")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InvalidManifest(f"{what}: artifactType must be a string")
        platform = obj.get("platform")
        plat: dict[str, str] = {}
        if isinstance(platform, dict):
            plat = {k: v for k, v in platform.items() if isinstance(v, str)}
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_str_map(obj.get("annotations"), f"{what} annotations"),
            artifact_type=artifact_type,
            platform=MappingProxyType(plat),
        )


@dataclass(frozen=True)
class Manifest:
    """A manifest or index: the raw bytes, their digest, the media type and the parsed JSON."""

    digest: str
    media_type: str
    data: bytes
    document: Mapping[str, Any]

    @classmethod
    def parse(cls, data: bytes, digest: str, content_type: str | None) -> Manifest:
        """Parse bytes already checked against `digest`; the JSON `mediaType` wins over headers."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise InvalidManifest(f"manifest {digest} is not JSON") from None
        if not isinstance(doc, dict):
            raise InvalidManifest(f"manifest {digest} is not a JSON object")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            header = (content_type or "").split(";", 1)[0].strip().lower()
            if header in MANIFEST_TYPES:
                media_type = header
            elif "manifests" in doc:
                media_type = OCI_INDEX
            else:
                media_type = OCI_MANIFEST
        if media_type not in MANIFEST_TYPES:
            raise InvalidManifest(f"manifest {digest} has unsupported media type {media_type!r}")
        manifest = cls(digest, media_type, data, MappingProxyType(doc))
        # Parse, don't validate: the descriptors must be well formed for the object to exist.
        _ = manifest.manifests if manifest.is_index else manifest.layers
        _ = manifest.subject
        return manifest

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def _descriptors(self, key: str) -> tuple[Descriptor, ...]:
        items = self.document.get(key, [])
        if not isinstance(items, list):
            raise InvalidManifest(f"manifest {self.digest}: {key} is not a list")
        return tuple(
            Descriptor.from_json(item, f"manifest {self.digest} {key}[{i}]")
            for i, item in enumerate(items)
        )

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """An image manifest's layers (empty for an index)."""
        return () if self.is_index else self._descriptors("layers")

    @property
    def manifests(self) -> tuple[Descriptor, ...]:
        """An index's manifests (empty for an image manifest)."""
        return self._descriptors("manifests") if self.is_index else ()

    @property
    def config(self) -> Descriptor | None:
        config = self.document.get("config")
        return None if config is None else Descriptor.from_json(config, f"{self.digest} config")

    @property
    def subject(self) -> Descriptor | None:
        subject = self.document.get("subject")
        return None if subject is None else Descriptor.from_json(subject, f"{self.digest} subject")

    @property
    def artifact_type(self) -> str | None:
        """`artifactType`, else the config media type (the OCI 1.1 rule for artifacts)."""
        value = self.document.get("artifactType")
        if isinstance(value, str):
            return value
        config = self.config
        return None if config is None else config.media_type

    @property
    def annotations(self) -> Mapping[str, str]:
        return _str_map(self.document.get("annotations"), f"manifest {self.digest} annotations")
