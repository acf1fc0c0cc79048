"""Real third-party cosign signatures, pushed into the test registry byte for byte.

The items come from other projects' test suites (see tests/data/third_party/*/ATTRIBUTION.md).
Most carry the signature artifacts and the signed digest but not the image's own blobs, so the
image manifest cannot be pushed; like `cosign verify` with a digest reference, the service then
reads `sha256-<hex>.sig` directly. A `.sig` manifest whose config blob is absent is rebuilt around
the original layers (same payload bytes, same annotations, a fresh config): the signature covers
the payload and the annotations carry the rest, so it is the same signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.oci import OCI_MANIFEST, Descriptor, Pusher, canonical, sha256_digest

DATA = Path(__file__).parent / "data" / "third_party"
COSIGN_OCI = DATA / "cosign-oci"
SIG_CONFIG = canonical({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}})
GITHUB_OAUTH = "https://github.com/login/oauth"
GITHUB_ACTIONS = "https://token.actions.githubusercontent.com"


@dataclass(frozen=True)
class Case:
    """One verification through the API and what it must give."""

    id: str
    repo: str
    digest: str
    policy: dict[str, Any]
    verified: bool
    reason: str = ""  # a fragment the verdict's reasons must contain when not verified
    signer: str = ""  # who a passing verdict must name


def _layer(pusher: Pusher, repo: str, payload: bytes, descriptor: dict[str, Any]) -> Descriptor:
    pushed = pusher.blob(repo, payload, descriptor["mediaType"])
    assert pushed.digest == descriptor["digest"], f"{repo}: payload does not match its descriptor"
    return Descriptor(
        descriptor["mediaType"], pushed.digest, pushed.size, descriptor.get("annotations")
    )


def push_sig(pusher: Pusher, repo: str, image_digest: str, layers: list[Descriptor]) -> str:
    """A cosign `.sig` manifest around `layers`, at tag `sha256-<hex>.sig`; returns its digest."""
    config = pusher.blob(repo, SIG_CONFIG, "application/vnd.oci.image.config.v1+json")
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
    )
    tag = image_digest.replace(":", "-") + ".sig"
    return pusher.manifest(repo, tag, manifest, OCI_MANIFEST).digest


def _pem(path: Path) -> str:
    return path.read_text()


def _no_tlog(policy: dict[str, Any]) -> dict[str, Any]:
    return {**policy, "transparencyLog": {"required": False}}


def push_connaisseur(pusher: Pusher) -> list[Case]:
    root = COSIGN_OCI / "connaisseur"
    image_dir = root / "securesystemsengineering" / "testimage"
    cases: list[Case] = []
    for sig_file in sorted((image_dir / "manifests").glob("sha256-*.sig.json")):
        manifest = json.loads(sig_file.read_bytes())
        digest = "sha256:" + sig_file.name.removeprefix("sha256-").removesuffix(".sig.json")
        layers = [
            _layer(
                pusher,
                "connaisseur/testimage",
                (image_dir / "blobs" / f"{d['digest']}.json").read_bytes(),
                d,
            )
            for d in manifest["layers"]
        ]
        push_sig(pusher, "connaisseur/testimage", digest, layers)
    keyless = (
        "sha256:" + hashlib.sha256((image_dir / "manifests/keyless.json").read_bytes()).hexdigest()
    )
    alice_only = (
        "sha256:"
        + hashlib.sha256(
            (image_dir / "manifests/multi-cosigned-alice.json").read_bytes()
        ).hexdigest()
    )
    multi = (
        "sha256:"
        + hashlib.sha256(
            (image_dir / "manifests/multi-cosigned-alice-bob-charlie.json").read_bytes()
        ).hexdigest()
    )
    unsigned = (
        "sha256:"
        + hashlib.sha256((image_dir / "manifests/co-unsigned.json").read_bytes()).hexdigest()
    )
    alice, bob, charlie = (_pem(root / f"{n}.key") for n in ("alice", "bob", "charlie"))
    repo = "connaisseur/testimage"
    cases += [
        Case(
            "connaisseur-keyless",
            repo,
            keyless,
            {"certificateIdentityRegexp": "philipp", "certificateOidcIssuerRegexp": "github"},
            True,
            signer="philipp.belitz@securesystems.de",
        ),
        Case(
            "connaisseur-keyless-wrong-identity",
            repo,
            keyless,
            {"certificateIdentity": "bob@gmail.com", "certificateOidcIssuerRegexp": "google"},
            False,
            reason="philipp.belitz@securesystems.de",
        ),
        Case("connaisseur-key-alice", repo, alice_only, _no_tlog({"keys": [alice]}), True),
        Case(
            "connaisseur-key-alice-requires-bob", repo, alice_only, _no_tlog({"keys": [bob]}), False
        ),
        Case(
            "connaisseur-threshold-2-of-alice-bob",
            repo,
            multi,
            _no_tlog({"keys": [alice, bob], "threshold": 2}),
            True,
        ),
        Case(
            "connaisseur-threshold-3-of-alice-bob",
            repo,
            multi,
            _no_tlog({"keys": [alice, bob], "threshold": 3}),
            False,
            reason="threshold",
        ),
        Case(
            "connaisseur-threshold-3-of-alice-bob-charlie",
            repo,
            multi,
            _no_tlog({"keys": [alice, bob, charlie], "threshold": 3}),
            True,
        ),
        Case(
            "connaisseur-unsigned",
            repo,
            unsigned,
            {"certificateIdentityRegexp": ".*", "certificateOidcIssuerRegexp": ".*"},
            False,
            reason="no signatures found",
        ),
    ]
    return cases


def _descriptor_case(pusher: Pusher, repo: str, case_dir: Path) -> str:
    descriptor = json.loads((case_dir / "signature-layer-descriptor.json").read_bytes())
    payload = (case_dir / "payload.json").read_bytes()
    image = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    push_sig(pusher, repo, image, [_layer(pusher, repo, payload, descriptor)])
    return str(image)


def push_ratify(pusher: Pusher) -> list[Case]:
    root = COSIGN_OCI / "ratify"
    cases: list[Case] = []
    ok = _descriptor_case(pusher, "ratify/keyless", root / "successful-keyless-verification")
    cases.append(
        Case(
            "ratify-keyless",
            "ratify/keyless",
            ok,
            {"certificateIdentity": "sozercan@gmail.com", "certificateOidcIssuer": GITHUB_OAUTH},
            True,
            signer="sozercan@gmail.com",
        )
    )
    bad = _descriptor_case(pusher, "ratify/keyless-bad-set", root / "failed-keyless-verification")
    cases.append(
        Case(
            "ratify-keyless-truncated-set",
            "ratify/keyless-bad-set",
            bad,
            {"certificateIdentity": "sozercan@gmail.com", "certificateOidcIssuer": GITHUB_OAUTH},
            False,
        )
    )
    for name, key in [
        ("valid-hash-256-keysize-2048-rsa-key-akv", "validRSA256PubKey.pem"),
        ("valid-hash-256-keysize-3072-rsa-key", "validRSA384PubKey.pem"),
        ("valid-hash-256-curve-p256-ecdsa-key-akv", "validECDSAP256PubKey.pem"),
        ("valid-hash-256-curve-p384-ecdsa-key", "validECDSAP384PubKey.pem"),
    ]:
        repo = f"ratify/{name}"
        digest = _descriptor_case(pusher, repo, root / name)
        cases.append(
            Case(f"ratify-{name}", repo, digest, _no_tlog({"keys": [_pem(root / key)]}), True)
        )
    return cases


def push_sigstore_rs(pusher: Pusher) -> list[Case]:
    root = COSIGN_OCI / "sigstore-rs"
    repo = "sigstore-rs/kubewarden"
    kubewarden = _descriptor_case(
        pusher, repo, root / "kubewarden-disallow-service-nodeport-keyless-2021"
    )
    suse = _descriptor_case(pusher, "sigstore-rs/suse", root / "suse-sle-micro-5.0-toolbox-rsa-key")
    busybox = _descriptor_case(pusher, "sigstore-rs/busybox", root / "busybox-key-no-bundle")
    suse_key = _pem(root / "suse-sle-micro-5.0-toolbox-rsa-key" / "key.pub")
    busybox_key = _pem(root / "busybox-key-no-bundle" / "key.pub")
    return [
        Case(
            "sigstore-rs-kubewarden-2021-keyless",
            repo,
            kubewarden,
            {"certificateIdentity": "flavio@castelli.me"},
            True,
            signer="flavio@castelli.me",
        ),
        Case(
            "sigstore-rs-suse-rsa", "sigstore-rs/suse", suse, _no_tlog({"keys": [suse_key]}), True
        ),
        Case(
            "sigstore-rs-suse-wrong-key",
            "sigstore-rs/suse",
            suse,
            _no_tlog({"keys": [busybox_key]}),
            False,
        ),
        Case(
            "sigstore-rs-busybox-p256",
            "sigstore-rs/busybox",
            busybox,
            _no_tlog({"keys": [busybox_key]}),
            True,
        ),
    ]


def _dir_signatures(case_dir: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """containers/image "dir" signatures: a magic line, then {mimeType, payload, annotations}."""
    out = []
    for sig in sorted(case_dir.glob("signature-*")):
        raw = sig.read_bytes()
        prefix = b"\x00sigstore-json\n"
        assert raw.startswith(prefix), sig
        obj = json.loads(raw[len(prefix) :])
        payload = base64.b64decode(obj["payload"])
        descriptor = {
            "mediaType": obj["mimeType"],
            "digest": sha256_digest(payload),
            "annotations": obj.get("annotations") or {},
        }
        out.append((payload, descriptor))
    return out


def push_containers_image(pusher: Pusher) -> list[Case]:
    root = COSIGN_OCI / "containers-image"
    cosign_pub, cosign2_pub = _pem(root / "cosign.pub"), _pem(root / "cosign2.pub")
    cases: list[Case] = []

    def push(name: str) -> tuple[str, str]:
        case_dir = root / name
        repo = f"containers-image/{name}"
        digest = "sha256:" + hashlib.sha256((case_dir / "manifest.json").read_bytes()).hexdigest()
        layers = [_layer(pusher, repo, p, d) for p, d in _dir_signatures(case_dir)]
        if layers:
            push_sig(pusher, repo, digest, layers)
        return repo, digest

    repo, digest = push("dir-img-cosign-fulcio-rekor-valid")
    cases.append(
        Case(
            "containers-image-fulcio-rekor-valid",
            repo,
            digest,
            {"certificateIdentity": "mitr@redhat.com", "certificateOidcIssuer": GITHUB_OAUTH},
            True,
            signer="mitr@redhat.com",
        )
    )
    repo, digest = push("dir-img-cosign-key-rekor-valid")
    cases.append(
        Case("containers-image-key-rekor-valid", repo, digest, {"keys": [cosign2_pub]}, True)
    )
    cases.append(
        Case("containers-image-key-rekor-wrong-key", repo, digest, {"keys": [cosign_pub]}, False)
    )
    for name, verified in [
        ("dir-img-cosign-valid", True),
        ("dir-img-cosign-valid-2", True),
        ("dir-img-cosign-mixed", True),
        ("dir-img-cosign-valid-with-tag", True),
        ("dir-img-cosign-modified-manifest", False),
        ("dir-img-cosign-manifest-digest-error", False),
        ("dir-img-cosign-other-attachment", False),
        ("dir-img-unsigned", False),
    ]:
        repo, digest = push(name)
        cases.append(
            Case(
                f"containers-image-{name.removeprefix('dir-img-')}",
                repo,
                digest,
                _no_tlog({"keys": [cosign_pub]}),
                verified,
            )
        )
    repo, digest = push("dir-img-cosign-pki-valid")
    cases.append(
        Case(
            "containers-image-pki-not-fulcio",
            repo,
            digest,
            {"certificateIdentity": "qiwan@redhat.com", "certificateOidcIssuerRegexp": ".*"},
            False,
        )
    )
    return cases


def _push_from_layout(
    pusher: Pusher, repo: str, layout: Path, descriptor: dict[str, Any], ref: str
) -> None:
    """Push a manifest (an index with its children first) and its blobs from an OCI layout."""
    raw = (layout / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_bytes()
    manifest = json.loads(raw)
    for child in manifest.get("manifests", []):
        _push_from_layout(pusher, repo, layout, child, child["digest"])
    for blob in [manifest.get("config"), *manifest.get("layers", [])]:
        if blob is not None:
            data = (layout / "blobs" / "sha256" / blob["digest"].split(":")[1]).read_bytes()
            pusher.blob(repo, data, blob["mediaType"])
    pusher.manifest(repo, ref, raw, descriptor["mediaType"])


def push_slsa_verifier(pusher: Pusher) -> list[Case]:
    """The `cosign save` OCI layouts: every blob is there, so everything is pushed as it is."""
    root = COSIGN_OCI / "slsa-verifier"
    cases: list[Case] = []
    for version in ("v1.4.0", "v2.0.0", "v2.1.0"):
        layout = root / version / "container_workflow_dispatch"
        repo = f"slsa-verifier/{version.replace('.', '-')}"
        index = json.loads((layout / "index.json").read_bytes())
        image_digest = (root / version / "container_workflow_dispatch.digest").read_text().strip()
        for entry in index["manifests"]:
            kind = entry["annotations"]["kind"]
            ref = {
                "dev.cosignproject.cosign/image": "latest",
                "dev.cosignproject.cosign/imageIndex": "latest",
                "dev.cosignproject.cosign/atts": image_digest.replace(":", "-") + ".att",
            }[kind]
            _push_from_layout(pusher, repo, layout, entry, ref)
        identity = (
            "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
            f"generator_container_slsa3.yml@refs/tags/{version}"
        )
        # The image has an attestation and no signature: `cosign verify` finds none, and so does
        # a signature policy; slsa-verifier (`cosign verify-attestation`) counts the attestation.
        signer = {"certificateIdentity": identity, "certificateOidcIssuer": GITHUB_ACTIONS}
        cases.append(
            Case(
                f"slsa-verifier-{version}-unsigned",
                repo,
                image_digest,
                signer,
                False,
                reason="no signatures found: found 1 attestation",
            )
        )
        attested = {**signer, "acceptAttestationsAsSignatures": True}
        cases.append(
            Case(f"slsa-verifier-{version}", repo, image_digest, attested, True, signer=identity)
        )
        # slsa-verifier's own check: the provenance's builder and source repository.
        source = "predicate.invocation.configSource.uri"
        provenance = {
            **attested,
            "attestations": [
                {
                    "name": "provenance",
                    "predicateType": "slsaprovenance",
                    "conditions": [
                        {"path": "predicate.builder.id", "equals": identity},
                        {
                            "path": source,
                            "startsWith": "git+https://github.com/"
                            "${certificate.githubWorkflowRepository}@",
                        },
                    ],
                }
            ],
        }
        cases.append(
            Case(f"slsa-verifier-{version}-provenance", repo, image_digest, provenance, True)
        )
        for name, condition in (
            ("source", {"path": source, "startsWith": "git+https://github.com/other/repo@"}),
            ("branch", {"path": source, "matches": "@refs/heads/release$"}),
            ("builder", {"path": "predicate.builder.id", "equals": identity + "x"}),
        ):
            wrong = json.loads(json.dumps(provenance))
            wrong["attestations"][0]["conditions"].append(condition)
            cases.append(
                Case(
                    f"slsa-verifier-{version}-provenance-wrong-{name}",
                    repo,
                    image_digest,
                    wrong,
                    False,
                    reason=f"condition {condition['path']}",
                )
            )
        cases.append(
            Case(
                f"slsa-verifier-{version}-wrong-builder",
                repo,
                image_digest,
                {**attested, "certificateIdentity": identity.replace(version, "v9.9.9")},
                False,
                reason="refs/tags/v9.9.9",
            )
        )
    return cases


def push_all(pusher: Pusher) -> list[Case]:
    """Every source; returns the cases in a stable order."""
    return [
        *push_connaisseur(pusher),
        *push_ratify(pusher),
        *push_sigstore_rs(pusher),
        *push_containers_image(pusher),
        *push_slsa_verifier(pusher),
    ]
