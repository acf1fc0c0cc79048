"""`POST /v1/admission/mutate` end to end: AdmissionReviews of a Pod, a Deployment and a CronJob
shaped like the Kubernetes documentation's (tests/data/admission/), sent to the service under
gunicorn with the real registry and the local Sigstore instance; each answer's JSON Patch is
applied with the `jsonpatch` library and must give the expected object: every image given by
tag that verified, pinned to the digest that was verified, nothing else changed."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonpatch
import pytest
import yaml

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.e2e.test_admission_reviews import review
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import Image, RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
POLICIES = {
    "policies": [
        {"name": "strict", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "audit-only", "tenant": "platform", "mode": "audit", "policy": POLICY},
    ],
    "admission": {"namespaces": {"payments": "strict", "dev": "audit-only"},
                  "exempt": ["sandbox"]},
}  # fmt: skip


@dataclass(frozen=True)
class Setup:
    client: CheckedClient
    signer: RegistrySigner
    signed: Image
    also_signed: Image
    unsigned: Image


@pytest.fixture(scope="module")
def setup(
    start_service: ServiceFactory,
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
) -> Iterator[Setup]:
    policy_file = tmp_path_factory.mktemp("mutate") / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(POLICIES))
    with (
        sigstore_local.registry_signer(registry.url) as signer,
        start_service(
            rekor_url=sigstore_local.url,
            trust_root_file=str(sigstore_local.trusted_root_path),
            policy_file=str(policy_file),
        ) as (_, client),
    ):
        signed, also, unsigned = (signer.image(f"mutate/{n}", "v1") for n in ("a", "b", "c"))
        signer.sign(signed)
        signer.sign(also)
        yield Setup(client, signer, signed, also, unsigned)


def mutate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/admission/mutate", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == body["request"]["uid"] and answer["allowed"] is True
    return answer


def patched(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The reviewed object with the answer's patch applied, as the API server applies it."""
    obj = body["request"]["object"]
    if "patch" not in answer:
        return copy.deepcopy(obj)
    assert answer["patchType"] == "JSONPatch"
    patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(answer["patch"])))
    result: dict[str, Any] = patch.apply(obj)
    return result


def pin(image: Image) -> str:
    return f"{image.name}@{image.digest}"


def test_a_pod_has_its_verified_tag_pinned_and_its_unsigned_one_left(setup: Setup) -> None:
    body = review("pod-create.json", "payments", setup.signed.tag_reference,
                  setup.unsigned.tag_reference)  # fmt: skip
    answer = mutate(setup.client, body)
    expected = copy.deepcopy(body["request"]["object"])
    expected["spec"]["containers"][0]["image"] = pin(setup.signed)
    assert patched(body, answer) == expected  # the unsigned init container is not pinned
    assert answer["auditAnnotations"]["pinned"] == (
        "pinned 1 of 2 image(s) given by tag to the verified digest; not verified, so not "
        f"pinned: {setup.unsigned.tag_reference}"
    )
    # The validating webhook, called after every mutating one, sees the digest and still
    # denies the unsigned image.
    after = copy.deepcopy(body)
    after["request"]["object"] = patched(body, answer)
    decided = setup.client.post("/v1/admission", json=after).json()["response"]
    assert decided["allowed"] is False
    assert setup.unsigned.tag_reference in decided["status"]["message"]
    assert pin(setup.signed) not in decided["status"]["message"]


def test_a_deployment_update_pins_its_changed_and_new_images(setup: Setup) -> None:
    body = review("deployment-update.json", "payments", setup.signed.tag_reference,
                  setup.also_signed.tag_reference)  # fmt: skip
    answer = mutate(setup.client, body)
    expected = copy.deepcopy(body["request"]["object"])
    containers = expected["spec"]["template"]["spec"]["containers"]
    containers[0]["image"], containers[1]["image"] = pin(setup.signed), pin(setup.also_signed)
    assert patched(body, answer) == expected
    # The same Deployment updated again (say, its replicas): nothing changed image, so nothing
    # is pinned, and no rollout is started by us.
    again = copy.deepcopy(body)
    again["request"]["oldObject"] = copy.deepcopy(body["request"]["object"])
    again["request"]["object"]["spec"]["replicas"] = 5
    assert "patch" not in mutate(setup.client, again)


def test_a_cronjob_pins_its_template_and_leaves_a_digest_with_a_tag(setup: Setup) -> None:
    tag_and_digest = f"{setup.also_signed.tag_reference}@{setup.also_signed.digest}"
    body = review("cronjob-create.json", "dev", setup.signed.tag_reference, tag_and_digest)
    answer = mutate(setup.client, body)
    expected = copy.deepcopy(body["request"]["object"])
    spec = expected["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = pin(setup.signed)
    assert patched(body, answer) == expected
    assert spec["initContainers"][0]["image"] == tag_and_digest


def test_audit_mode_does_not_pin_what_failed(setup: Setup) -> None:
    body = review("pod-create.json", "dev", setup.unsigned.tag_reference,
                  setup.also_signed.reference)  # fmt: skip
    answer = mutate(setup.client, body)
    assert "patch" not in answer
    assert patched(body, answer) == body["request"]["object"]


def test_exempt_and_unmapped_namespaces_are_left_alone(setup: Setup) -> None:
    for namespace in ("sandbox", "elsewhere"):
        body = review("pod-create.json", namespace, setup.signed.tag_reference,
                      setup.also_signed.tag_reference)  # fmt: skip
        assert mutate(setup.client, body) == {"uid": body["request"]["uid"], "allowed": True}


def test_the_pin_holds_when_the_tag_moves(setup: Setup) -> None:
    """Admitted by tag, pinned: a push to the tag between admission and pull does not change
    what runs. Reviewing the patched Pod again verifies the pinned digest, while the tag now
    names an unsigned image that the validating webhook denies."""
    first = setup.signer.image("mutate/moving", "v1")
    setup.signer.sign(first)
    body = review("pod-create.json", "payments", first.tag_reference,
                  setup.also_signed.reference)  # fmt: skip
    pinned_pod = patched(body, mutate(setup.client, body))
    assert pinned_pod["spec"]["containers"][0]["image"] == pin(first)
    moved = setup.signer.image("mutate/moving", "v1")  # the tag now names another image
    assert moved.digest != first.digest
    again = copy.deepcopy(body)
    again["request"]["object"] = pinned_pod
    assert setup.client.post("/v1/admission", json=again).json()["response"]["allowed"] is True
    by_tag = setup.client.post("/v1/admission", json=body).json()["response"]
    assert by_tag["allowed"] is False and moved.digest in by_tag["status"]["message"]
