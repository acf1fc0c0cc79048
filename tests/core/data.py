"""Loaders for the real third-party items in tests/data/third_party (see ATTRIBUTION.md there).

Each turns an upstream file layout into the core's inputs exactly as the registry would return
them: the payload blob bytes, the layer's annotations, media type and digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from service.core import (
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    ImageResult,
    LogEntry,
    LogLookup,
    TrustRoot,
    policy_from_mapping,
    verify_image,
)
from service.core.inputs import Signature

DATA = Path(__file__).resolve().parent.parent / "data" / "third_party"
COSIGN_OCI = DATA / "cosign-oci"
PRODUCTION_ROOT = (
    DATA / "trust-roots" / "sigstore-python" / "tuf-repo-cdn.sigstore.dev" / "trusted_root.json"
)
CONNAISSEUR = COSIGN_OCI / "connaisseur"
CONNAISSEUR_IMAGE = CONNAISSEUR / "securesystemsengineering" / "testimage"
RATIFY = COSIGN_OCI / "ratify"
SIGSTORE_RS = COSIGN_OCI / "sigstore-rs"
CONTAINERS_IMAGE = COSIGN_OCI / "containers-image"
SLSA_VERIFIER = COSIGN_OCI / "slsa-verifier"
COSIGN_BUNDLE = COSIGN_OCI / "cosign-bundle-v03"

GITHUB_ATTESTATIONS = DATA / "github-attestations"
GITHUB_ROOT = DATA / "trust-roots" / "github" / "github-trusted-root.kyverno-testdata.json"
# GitHub's artifact attestation for this image (opa-provider), made by GitHub's private instance.
GITHUB_IMAGE = "sha256:d57f9212097b86c8d75158ea1d974721e7c6f8c33bd77838b242c8f6a2d21813"
GITHUB_IMAGE_SIGNER = (
    "https://github.com/github/artifact-attestations-opa-provider/.github/workflows/"
    "docker.yaml@refs/pull/31/merge"
)
CLI_CLI = GITHUB_ATTESTATIONS / "cli-cli"
WHL = CLI_CLI / "github_provenance_demo-0.0.12-py3-none-any.whl"
WHL_SIGNER = (
    "https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/heads/main"
)

GITHUB_OAUTH = "https://github.com/login/oauth"
GITHUB_ACTIONS = "https://token.actions.githubusercontent.com"


def production_root() -> TrustRoot:
    return TrustRoot.from_json(PRODUCTION_ROOT.read_bytes())


def github_root() -> TrustRoot:
    """GitHub's private Sigstore instance: Fulcio and TSA, no transparency or CT log."""
    return TrustRoot.from_json(GITHUB_ROOT.read_bytes(), "github")


def github_bundle() -> BundleSignature:
    data = (
        GITHUB_ATTESTATIONS / "artifact-attestations-opa-provider" / "okBundle.sigstore.json"
    ).read_bytes()
    return BundleSignature(
        bundle=data, manifest_digest=sha256_digest(data), source="github:referrer"
    )


def whl_bundle(variant: str = "") -> bytes:
    """cli/cli's attestation of the demo wheel (`variant`: `-missing-cert`, ...), one JSON line."""
    name = f"github_provenance_demo-0.0.12-py3-none-any-bundle{variant}.jsonl"
    return (CLI_CLI / name).read_bytes().strip()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pem(path: Path) -> str:
    return path.read_text()


def connaisseur_digest(manifest: str) -> str:
    """The digest of a connaisseur image manifest (the files are the byte-exact manifests)."""
    return sha256_digest((CONNAISSEUR_IMAGE / "manifests" / f"{manifest}.json").read_bytes())


def connaisseur_signatures(image_digest: str) -> list[CosignSignature]:
    """The layers of `sha256-<hex>.sig` for an image of the connaisseur mock registry."""
    sig = CONNAISSEUR_IMAGE / "manifests" / (image_digest.replace(":", "-") + ".sig.json")
    manifest = json.loads(sig.read_bytes())
    return [
        CosignSignature(
            payload=(CONNAISSEUR_IMAGE / "blobs" / f"{layer['digest']}.json").read_bytes(),
            annotations=layer.get("annotations", {}),
            media_type=layer["mediaType"],
            layer_digest=layer["digest"],
            source=f"connaisseur:{sig.name}",
        )
        for layer in manifest["layers"]
    ]


def descriptor_signature(case_dir: Path) -> tuple[str, CosignSignature]:
    """A ratify / sigstore-rs case: (image digest from the payload, the layer)."""
    descriptor = json.loads((case_dir / "signature-layer-descriptor.json").read_bytes())
    payload = (case_dir / "payload.json").read_bytes()
    image = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    return image, CosignSignature(
        payload=payload,
        annotations=descriptor.get("annotations", {}),
        media_type=descriptor["mediaType"],
        layer_digest=descriptor["digest"],
        source=f"{case_dir.parent.name}:{case_dir.name}",
    )


def dir_signatures(case_dir: Path) -> list[CosignSignature]:
    """containers/image "dir" signatures: a magic line, then {mimeType, payload, annotations}."""
    out = []
    for path in sorted(case_dir.glob("signature-*")):
        raw = path.read_bytes()
        prefix = b"\x00sigstore-json\n"
        assert raw.startswith(prefix), path
        obj = json.loads(raw[len(prefix) :])
        payload = base64.b64decode(obj["payload"])
        out.append(
            CosignSignature(
                payload=payload,
                annotations=obj.get("annotations") or {},
                media_type=obj["mimeType"],
                layer_digest=sha256_digest(payload),
                source=f"containers-image:{case_dir.name}/{path.name}",
            )
        )
    return out


def dir_image_digest(case_dir: Path) -> str:
    return sha256_digest((case_dir / "manifest.json").read_bytes())


def slsa_attestations(version: str) -> tuple[str, list[CosignAttestation]]:
    """(image digest, the `.att` layers) of a slsa-verifier `cosign save` layout."""
    root = SLSA_VERIFIER / version
    layout = root / "container_workflow_dispatch"
    image = (root / "container_workflow_dispatch.digest").read_text().strip()
    index = json.loads((layout / "index.json").read_bytes())
    out: list[CosignAttestation] = []
    for entry in index["manifests"]:
        if entry["annotations"]["kind"] != "dev.cosignproject.cosign/atts":
            continue
        manifest = json.loads(
            (layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
        )
        for layer in manifest["layers"]:
            out.append(
                CosignAttestation(
                    payload=(
                        layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
                    ).read_bytes(),
                    annotations=layer.get("annotations", {}),
                    media_type=layer["mediaType"],
                    layer_digest=layer["digest"],
                    source=f"slsa-verifier:{version}",
                )
            )
    return image, out


COSIGN_BUNDLE_IMAGE = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"


def cosign_bundle() -> BundleSignature:
    data = (COSIGN_BUNDLE / "oci-attestation.sigstore.json").read_bytes()
    return BundleSignature(
        bundle=data, manifest_digest=sha256_digest(data), source="cosign:referrer"
    )


def run(
    trust: TrustRoot | Sequence[TrustRoot],
    image: str,
    signatures: Sequence[Signature],
    policy: Mapping[str, Any],
    log_entries: Mapping[LogLookup, LogEntry | None] | None = None,
    *,
    now: datetime,
    log_unreachable: Sequence[LogLookup] = (),
    log_lookups_off: bool = False,
) -> ImageResult:
    """`verify_image` as the tests call it: a policy mapping (which may name any of the
    `trust` roots), at most one entry per lookup."""
    roots = [trust] if isinstance(trust, TrustRoot) else list(trust)
    return verify_image(
        image_digest=image,
        signatures=signatures,
        log_entries={k: () if v is None else (v,) for k, v in (log_entries or {}).items()},
        policy=policy_from_mapping(policy, trust_roots=[r.name for r in roots]),
        trust=trust,
        now=now,
        log_unreachable=log_unreachable,
        log_lookups_off=log_lookups_off,
    )
