"""A minimal OCI distribution *push* client for tests (the service itself only reads).

Writes blobs and manifests byte for byte, so tests control every digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ALL_MANIFEST_TYPES = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    """Compact JSON bytes, as the real tools write manifests."""
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    artifact_type: str | None = None
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out


class Pusher:
    """Pushes blobs and manifests to one registry (`http://127.0.0.1:PORT`)."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None) -> None:
        self._client = httpx.Client(base_url=base_url, auth=auth, timeout=10)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob(
        self, repo: str, data: bytes, media_type: str = "application/octet-stream"
    ) -> Descriptor:
        """Upload `data` (monolithic POST then PUT) unless the registry has it already."""
        digest = sha256_digest(data)
        if self._client.head(f"/v2/{repo}/blobs/{digest}").status_code != 200:
            start = self._client.post(f"/v2/{repo}/blobs/uploads/")
            start.raise_for_status()
            # The upload URL carries its own query (`_state`); the digest is added to it.
            location = httpx.URL(start.headers["location"]).copy_merge_params({"digest": digest})
            done = self._client.put(
                location,
                content=data,
                headers={"content-type": "application/octet-stream"},
            )
            done.raise_for_status()
        return Descriptor(media_type, digest, len(data))

    def manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> Descriptor:
        """PUT a manifest under `ref` (a tag or its digest), byte for byte."""
        response = self._client.put(
            f"/v2/{repo}/manifests/{ref}", content=data, headers={"content-type": media_type}
        )
        response.raise_for_status()
        digest = sha256_digest(data)
        assert response.headers.get("docker-content-digest", digest) == digest
        return Descriptor(media_type, digest, len(data))

    def get_manifest(self, repo: str, ref: str) -> httpx.Response:
        return self._client.get(
            f"/v2/{repo}/manifests/{ref}", headers={"accept": ALL_MANIFEST_TYPES}
        )

    def image(
        self,
        repo: str,
        tag: str | None,
        *,
        layer: bytes,
        platform: Mapping[str, str] | None = None,
        config_extra: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        """Push a small single-platform OCI image (one layer) and return its manifest."""
        plat = dict(platform or {"architecture": "amd64", "os": "linux"})
        config_obj: dict[str, Any] = {
            **plat,
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
        }
        config_obj.update(config_extra or {})
        config = self.blob(repo, canonical(config_obj), "application/vnd.oci.image.config.v1+json")
        layer_d = self.blob(repo, layer, "application/vnd.oci.image.layer.v1.tar")
        manifest = canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.to_json(),
                "layers": [layer_d.to_json()],
            }
        )
        desc = self.manifest(repo, tag or sha256_digest(manifest), manifest, OCI_MANIFEST)
        return Descriptor(desc.media_type, desc.digest, desc.size, platform=plat)

    def index(self, repo: str, tag: str | None, manifests: list[Descriptor]) -> Descriptor:
        """Push an OCI image index over already-pushed platform manifests."""
        body = canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [m.to_json() for m in manifests],
            }
        )
        return self.manifest(repo, tag or sha256_digest(body), body, OCI_INDEX)
