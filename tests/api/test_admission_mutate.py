"""`POST /v1/admission/mutate` in process: which images are pinned and how (pure functions,
the patch applied with the `jsonpatch` library), and the protocol: configuration, exemptions,
no denial ever, the same caller authentication as the validating webhook. Pinning real
verified digests is end to end in tests/e2e/test_admission_mutate.py."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from service.api.admission import Container, parse_review, pin_patch, pinned
from tests.api.test_admission import APP, SIDECAR, make_client, pod_spec, review
from tests.contract import CheckedClient

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", f"nginx@{D1}"),
        ("nginx:1.25", f"nginx@{D1}"),
        ("library/nginx:1.25", f"library/nginx@{D1}"),
        ("ghcr.io/acme/app:v1.2.3", f"ghcr.io/acme/app@{D1}"),
        ("localhost:5000/app", f"localhost:5000/app@{D1}"),  # a port, not a tag
        ("localhost:5000/app:v1", f"localhost:5000/app@{D1}"),
        ("registry.test:443/a/b/c:1-x_y.z", f"registry.test:443/a/b/c@{D1}"),
        (f"nginx@{D2}", None),  # already a digest: left as it is
        (f"nginx:1.25@{D2}", None),
    ],
)
def test_a_tag_becomes_the_verified_digest_keeping_the_name_as_written(
    image: str, expected: str | None
) -> None:
    assert pinned(image, D1) == expected


def test_the_patch_replaces_each_pinned_container_and_applies() -> None:
    obj: dict[str, Any] = {"kind": "Deployment", "spec": {"template": {"spec": pod_spec(
        [APP, SIDECAR, APP], init=[SIDECAR], ephemeral=[f"{APP}@{D2}"])}}}  # fmt: skip
    body = review(obj, kind="Deployment", group="apps")
    parsed = parse_review(body)
    patch = pin_patch(parsed.containers, {APP: D1})  # the sidecar did not verify
    assert patch == [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image",
         "value": f"127.0.0.1:1/shop/app@{D1}"},
        {"op": "replace", "path": "/spec/template/spec/containers/2/image",
         "value": f"127.0.0.1:1/shop/app@{D1}"},
    ]  # fmt: skip
    result = jsonpatch.apply_patch(obj, patch)
    expected = copy.deepcopy(obj)
    spec = expected["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = spec["containers"][2]["image"] = f"127.0.0.1:1/shop/app@{D1}"
    assert result == expected
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == APP  # not in place


def test_on_update_only_new_and_changed_images_are_pinned() -> None:
    """Changing a running Pod's image restarts the container, and a changed pod template rolls
    a workload out: an UPDATE that leaves an image as it was must leave it alone."""
    old = {"kind": "Pod", "spec": pod_spec([APP, SIDECAR])}
    new = {"kind": "Pod", "spec": pod_spec([APP, "127.0.0.1:1/shop/sidecar:v3"],
                                           ephemeral=[SIDECAR])}  # fmt: skip
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = old
    changed = parse_review(body).changed()
    assert [c.pointer for c in changed] == [
        "/spec/containers/1/image", "/spec/ephemeralContainers/0/image"]  # fmt: skip
    # Without an oldObject it cannot tell: nothing is pinned.
    body["request"].pop("oldObject")
    assert parse_review(body).changed() == ()
    body["request"]["oldObject"] = {"spec": "not a pod spec"}
    assert parse_review(body).changed() == ()
    # A CREATE sets every image.
    assert len(parse_review(review(new)).changed()) == 3


def test_a_review_names_its_workload() -> None:
    pod = {"kind": "Pod", "metadata": {"generateName": "web-7d9f-",
           "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True},
                               {"kind": "Other", "name": "x"}]},
           "spec": pod_spec([APP])}  # fmt: skip
    assert parse_review(review(pod)).workload == "ReplicaSet/web-7d9f"
    pod["metadata"] = {"generateName": "web-7d9f-"}
    body = review(pod)
    body["request"].pop("name")
    assert parse_review(body).workload == "Pod/web-7d9f-*"
    pod["metadata"] = {"ownerReferences": "junk"}
    assert parse_review(review(pod)).workload == "Pod/web"


def mutate(client: CheckedClient, body: Any, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/v1/admission/mutate", json=body, **kwargs)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["response"]
    assert found["uid"] == body["request"]["uid"] and found["allowed"] is True
    return found


def test_an_image_that_does_not_verify_is_left_unpinned(tmp_path: Path) -> None:
    # Loopback: refused by the address guard, so it cannot be verified now. Never pinned, and
    # never denied here: the validating webhook decides.
    answer = mutate(make_client(tmp_path), review())
    assert "patch" not in answer and "patchType" not in answer
    assert answer["auditAnnotations"]["pinned"] == (
        f"pinned 0 of 1 image(s) given by tag to the verified digest; not verified, so not "
        f"pinned: {APP}"
    )


def test_nothing_to_pin_is_answered_at_once(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    by_digest = review({"kind": "Pod", "spec": pod_spec([f"{APP}@{D1}"])})
    assert mutate(client, by_digest) == {"uid": by_digest["request"]["uid"], "allowed": True}
    exempt = review(namespace="kube-system")
    assert mutate(client, exempt) == {"uid": exempt["request"]["uid"], "allowed": True}
    deleting = review(operation="DELETE")
    assert mutate(client, deleting) == {"uid": deleting["request"]["uid"], "allowed": True}


def test_a_namespace_without_a_policy_is_not_denied_here(tmp_path: Path) -> None:
    sectioned = b"""
policies:
  - name: gate
    tenant: platform
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
admission:
  namespaces: {payments: gate}
"""
    client = make_client(tmp_path, sectioned, admission_policy=None)
    body = review(namespace="shop")
    assert mutate(client, body) == {"uid": body["request"]["uid"], "allowed": True}
    denied = client.post("/v1/admission", json=body).json()["response"]
    assert denied["allowed"] is False  # the validating webhook is the one that denies


def test_the_mutating_webhook_is_configured_and_guarded_like_the_validating_one(
    tmp_path: Path, client: CheckedClient
) -> None:
    assert client.post("/v1/admission/mutate", json=review()).status_code == 404
    tokens = tmp_path / "admission-tokens"
    tokens.write_text("apiserver-webhook-token-0123456789\n")
    guarded = make_client(tmp_path, admission_token_file=tokens,
                          api_tokens=(("platform", "platform-token-0123456789"),))  # fmt: skip
    body = review()
    assert guarded.post("/v1/admission/mutate", json=body).status_code == 401
    # An API token is not the API server's: refused too.
    api = {"Authorization": "Bearer platform-token-0123456789"}
    assert guarded.post("/v1/admission/mutate", json=body, headers=api).status_code == 401
    webhook = {"Authorization": "Bearer apiserver-webhook-token-0123456789"}
    assert mutate(guarded, body, headers=webhook)["allowed"] is True
    bad = guarded.post("/v1/admission/mutate", json={"kind": "AdmissionReview"}, headers=webhook)
    assert bad.status_code == 400


def test_patch_encoding() -> None:
    """What the API server decodes: base64 of a JSON array of operations."""
    container = Container("/spec/containers/0/image", "containers", "a", "x:1")
    patch = pin_patch((container,), {"x:1": D1})
    encoded = base64.b64encode(json.dumps(patch).encode()).decode()
    assert json.loads(base64.b64decode(encoded)) == [
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"x@{D1}"}]  # fmt: skip
