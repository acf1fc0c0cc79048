"""The OCI registry client: references, the outbound-address guard, manifests and blobs with
digest checks, auth, and signature discovery. Depends on httpx only."""

from __future__ import annotations

from service.registry.client import RegistryClient, RegistryConfig, ResolvedImage
from service.registry.discovery import (
    BUNDLE_ARTIFACT_TYPE,
    Artifact,
    ArtifactKind,
    Discovery,
    Layer,
    discover,
)
from service.registry.errors import (
    AddressRefused,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    LimitExceeded,
    NotFound,
    RegistryCircuitOpen,
    RegistryError,
    RegistryTimeout,
    Unauthorized,
    Unavailable,
)
from service.registry.guard import AddressPolicy, check_host
from service.registry.manifest import Descriptor, Manifest, verify_digest
from service.registry.reference import ImageReference, parse_reference

__all__ = [
    "BUNDLE_ARTIFACT_TYPE",
    "AddressPolicy",
    "AddressRefused",
    "Artifact",
    "ArtifactKind",
    "Descriptor",
    "DigestMismatch",
    "Discovery",
    "ImageReference",
    "InvalidManifest",
    "InvalidReference",
    "Layer",
    "LimitExceeded",
    "Manifest",
    "NotFound",
    "RegistryCircuitOpen",
    "RegistryClient",
    "RegistryConfig",
    "RegistryError",
    "RegistryTimeout",
    "ResolvedImage",
    "Unauthorized",
    "Unavailable",
    "check_host",
    "discover",
    "parse_reference",
    "verify_digest",
]
