"""What the report tests share: a policy file of audit and enforce policies for two tenants,
images that pass and fail each way, and admission reviews of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.signer import Image, RegistrySigner

PLATFORM_TOKEN = "platform-token-0123456789abcdef"
OTHER_TOKEN = "other-tenant-token-0123456789ab"
PLATFORM = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
OTHER = {"Authorization": f"Bearer {OTHER_TOKEN}"}
TOKENS = f"platform={PLATFORM_TOKEN},other={OTHER_TOKEN}"
POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
DEV_WORKFLOW = artifacts.DEFAULT_IDENTITY.replace("refs/heads/main", "refs/heads/dev")
GOOGLE = "https://accounts.google.com"
POLICIES: dict[str, Any] = {
    "policies": [
        {"name": "watch", "tenant": "platform", "mode": "audit", "policy": POLICY},
        {"name": "gate", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "rollout", "tenant": "platform", "mode": "audit", "policy": POLICY},
        {"name": "provenance", "tenant": "platform", "mode": "audit",
         "policy": {**POLICY, "attestations": [{"predicateType": "slsaprovenance1"}]}},
        {"name": "theirs", "tenant": "other", "mode": "audit", "policy": POLICY},
    ],
    "admission": {
        "namespaces": {"shop": "watch", "payments": "gate", "staging": "rollout"},
        "exempt": ["kube-system"],
    },
}  # fmt: skip


def policy_file(directory: Path) -> Path:
    path = directory / "policies.yaml"
    path.write_text(yaml.safe_dump(POLICIES))
    return path


@dataclass(frozen=True)
class Images:
    """Images in the test registry, each pushed with a tag."""

    signed: Image
    wrong_identity: Image  # signed from the dev branch's workflow
    wrong_issuer: Image  # signed by the right SAN through another issuer
    unsigned: Image


def make_images(signer: RegistrySigner, prefix: str) -> Images:
    signed, identity, issuer, unsigned = (
        signer.image(f"{prefix}/{name}", "v1")
        for name in ("app", "dev-build", "google-build", "unsigned")
    )
    signer.sign(signed)
    signer.sign(identity, identity=signer.signer.identity(DEV_WORKFLOW))
    signer.sign(issuer, identity=signer.signer.identity(issuer=GOOGLE))
    return Images(signed, identity, issuer, unsigned)


def review(
    namespace: str, images: list[str], *, owner: str = "web-7d9f6c", kind: str = "ReplicaSet"
) -> dict[str, Any]:
    """A Pod CREATE as the API server sends one for a pod a ReplicaSet made (generated name)."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"705ab4f5-6393-11e8-b7cc-{time.monotonic_ns() % 10**12:012d}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{owner}-",
                    "namespace": namespace,
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": kind, "name": owner,
                         "uid": "8c4b6f4e-2f0a-4d3b-9b1e-5f2d7c9a1e30", "controller": True}
                    ],
                },
                "spec": {"containers": [{"name": f"c{i}", "image": x}
                                        for i, x in enumerate(images)]},
            },
            "dryRun": False,
        },
    }  # fmt: skip
