"""`POST /v1/admission` with a policy per namespace, end to end: AdmissionReview requests shaped
like the Kubernetes documentation's example (tests/data/admission/, see its README) sent over
HTTP to the service under gunicorn, with the real registry, the local Sigstore instance and Redis.

The policy file maps `payments` to an enforcing policy and `dev` to an auditing one (the same
identity), leaves every other namespace to a `default` that wants another identity (so it
refuses images the first two accept), and exempts `sandbox`.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer, ServerStartError
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import Image

DATA = Path(__file__).parents[1] / "data" / "admission"
POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
OTHER = {**POLICY, "certificateIdentity": "https://github.com/acme/other/.github/workflows/x.yml"}
POLICIES = {
    "policies": [
        {"name": "strict", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "audit-only", "tenant": "platform", "mode": "audit", "policy": POLICY},
        {"name": "release", "tenant": "platform", "mode": "enforce", "policy": OTHER},
    ],
    "admission": {
        "default": "release",
        "namespaces": {"payments": "strict", "dev": "audit-only"},
        "exempt": ["sandbox"],
    },
}
BUDGET = 2.0  # SIGVERIFY_ADMISSION_TIMEOUT, far below the registry timeout


# -- fixtures -----------------------------------------------------------------------------------


class Tarpit:
    """A "registry" on loopback that accepts connections and never answers, until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(conn)

    def close(self) -> None:
        """Stop listening and drop every held connection (the service's waits then end)."""
        self._closed.set()
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def tarpit() -> Iterator[Tarpit]:
    pit = Tarpit()
    yield pit
    pit.close()


@pytest.fixture(scope="module")
def policy_settings(
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    tarpit: Tarpit,
) -> dict[str, str]:
    """The file's `admission` section alone configures the webhook (no ADMISSION_POLICY)."""
    policy_file = tmp_path_factory.mktemp("admission-reviews") / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(POLICIES))
    return {
        "rekor_url": sigstore_local.url,
        "trust_root_file": str(sigstore_local.trusted_root_path),
        "policy_file": str(policy_file),
        "insecure_registries": f"{registry.host},{tarpit.host}",
        "registry_timeout": "30",
        "admission_timeout": str(BUDGET),
    }


@pytest.fixture(scope="module")
def client(
    start_service: ServiceFactory, policy_settings: dict[str, str]
) -> Iterator[CheckedClient]:
    with start_service(**policy_settings) as (_, checked):
        yield checked


@dataclass(frozen=True)
class Images:
    signed: Image  # pushed with a tag; signed
    also_signed: Image
    unsigned: Image  # pushed with a tag; never signed


@pytest.fixture(scope="module")
def images(sigstore_local: LocalSigstore, registry: RegistryServer) -> Iterator[Images]:
    with sigstore_local.registry_signer(registry.url) as signer:
        signed, also, unsigned = (signer.image(f"reviews/{n}", "v1") for n in ("a", "b", "c"))
        signer.sign(signed)
        signer.sign(also)
        yield Images(signed, also, unsigned)


def review(name: str, namespace: str, image: str, sidecar: str) -> dict[str, Any]:
    """The test data file `name`, its placeholders filled in (a fresh uid each time)."""
    text = (DATA / name).read_text()
    values = {
        "UID": f"705ab4f5-6393-11e8-b7cc-{time.monotonic_ns() % 10**12:012d}",
        "NAMESPACE": namespace,
        "IMAGE": image,
        "SIDECAR": sidecar,
    }
    filled = re.sub(r"\$\{([A-Z]+)\}", lambda m: values[m.group(1)], text)
    body: dict[str, Any] = json.loads(filled)
    return body


def admit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionResponse (checked against openapi.yaml by the client), with no token."""
    response = client.post("/v1/admission", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == body["request"]["uid"]
    return answer


def by_digest(image: Image) -> str:
    """How the webhook names an image given by tag: the tag, and the digest it resolved to."""
    return f"{image.tag_reference} ({image.digest})"


# -- the data files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pod-create.json",
        "deployment-update.json",
        "pod-ephemeralcontainers-update.json",
        "cronjob-create.json",
    ],
)
def test_the_data_files_have_the_documented_shape(name: str) -> None:
    request = review(name, "shop", "a", "b")["request"]
    documented = {"uid", "kind", "resource", "requestKind", "requestResource", "name",
                  "namespace", "operation", "userInfo", "object", "oldObject", "options",
                  "dryRun"}  # fmt: skip
    assert documented <= set(request)
    assert set(request["userInfo"]) == {"username", "uid", "groups", "extra"}
    assert "${" not in json.dumps(request)


# -- which policy -------------------------------------------------------------------------------


def test_two_namespaces_two_policies_one_enforcing_one_auditing(
    client: CheckedClient, images: Images
) -> None:
    signed, unsigned = images.signed.tag_reference, images.unsigned.tag_reference
    denied = admit(client, review("pod-create.json", "payments", signed, unsigned))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    message = denied["status"]["message"]
    assert message.startswith("sigverify policy 'strict' denied 1 of 2 image(s): ")
    # The image is named by tag and digest, with the check that failed.
    assert f"{by_digest(images.unsigned)}: " in message
    assert images.signed.tag_reference not in message
    assert "warnings" not in denied
    assert denied["auditAnnotations"]["policy"] == "strict"
    assert by_digest(images.unsigned) in denied["auditAnnotations"]["verification"]

    audited = admit(client, review("pod-create.json", "dev", signed, unsigned))
    assert audited["allowed"] is True and "status" not in audited
    (warning,) = audited["warnings"]
    assert warning.startswith(f"sigverify (audit, policy audit-only): {by_digest(images.unsigned)}")
    annotations = audited["auditAnnotations"]
    assert annotations["policy"] == "audit-only"
    assert annotations["verification"].startswith(
        f"would deny (audit) 1 of 2 image(s): {by_digest(images.unsigned)}: "
    )
    # The reason is the verdict's first reason for that image: the same in both answers.
    reason = message.split(f"{by_digest(images.unsigned)}: ", 1)[1]
    expected = f"sigverify (audit, policy audit-only): {by_digest(images.unsigned)}: {reason}"
    assert warning == (expected if len(expected) <= 256 else expected[:253] + "...")


def test_signed_images_pass_where_their_policy_is_mapped(
    client: CheckedClient, images: Images
) -> None:
    signed, also = images.signed.tag_reference, images.also_signed.reference
    for namespace in ("payments", "dev"):
        answer = admit(client, review("deployment-update.json", namespace, signed, also))
        assert answer == {"uid": answer["uid"], "allowed": True}, namespace


@pytest.mark.parametrize("namespace", ["shop", "kube-system"])
def test_an_unlisted_namespace_gets_the_default_policy(
    client: CheckedClient, images: Images, namespace: str
) -> None:
    # The same two signed images pass in `payments`; `release` wants another identity. The
    # file's `exempt` replaced the setting's list, so kube-system is checked too.
    signed, also = images.signed.tag_reference, images.also_signed.reference
    answer = admit(client, review("deployment-update.json", namespace, signed, also))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith("sigverify policy 'release' denied 2 of 2 image(s): ")
    assert f"{by_digest(images.signed)}: " in message
    assert f"{images.also_signed.reference}: " in message  # by digest already: named as given
    assert "identity" in message.lower()
    assert answer["auditAnnotations"]["policy"] == "release"


def test_an_exempt_namespace_is_not_verified(client: CheckedClient, images: Images) -> None:
    unsigned = images.unsigned.tag_reference
    answer = admit(client, review("pod-create.json", "sandbox", unsigned, unsigned))
    assert answer == {"uid": answer["uid"], "allowed": True}


def test_a_tag_is_answered_with_the_digest_it_resolved_to(
    client: CheckedClient, images: Images
) -> None:
    """`kubectl debug` adds an ephemeral container by tag: its digest is what was judged."""
    body = review(
        "pod-ephemeralcontainers-update.json",
        "payments",
        images.signed.reference,
        images.unsigned.tag_reference,
    )
    answer = admit(client, body)
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "denied 1 of 2 image(s)" in message
    found = re.search(
        re.escape(images.unsigned.tag_reference) + r" \((sha256:[0-9a-f]{64})\)", message
    )
    assert found is not None and found.group(1) == images.unsigned.digest
    assert images.signed.reference not in message


def test_a_debug_container_is_verified_like_every_other(
    client: CheckedClient, images: Images
) -> None:
    """The `ephemeralcontainers` subresource review (the chart's default rules send it): a
    signed debug image is admitted where the namespace enforces, an unsigned one denied by name,
    and under audit it is admitted with a warning naming it."""
    signed, unsigned = images.signed.tag_reference, images.unsigned.tag_reference
    name = "pod-ephemeralcontainers-update.json"
    allowed = admit(client, review(name, "payments", signed, images.also_signed.reference))
    assert allowed == {"uid": allowed["uid"], "allowed": True}
    denied = admit(client, review(name, "payments", signed, unsigned))
    assert denied["allowed"] is False
    assert f"{by_digest(images.unsigned)}: " in denied["status"]["message"]
    audited = admit(client, review(name, "dev", signed, unsigned))
    assert audited["allowed"] is True
    (warning,) = audited["warnings"]
    assert by_digest(images.unsigned) in warning


# -- the time budget ----------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["payments", "dev"])
def test_an_image_not_verified_within_the_budget_cannot_be_verified_now(
    client: CheckedClient, images: Images, tarpit: Tarpit, namespace: str
) -> None:
    """A registry that accepts the connection and never answers: the review is still answered
    within the budget (the registry timeout is 30 s), the stuck image as not verifiable now."""
    stuck = f"{tarpit.host}/reviews/stuck:v1"
    body = review("pod-create.json", namespace, images.signed.tag_reference, stuck)
    started = time.monotonic()
    answer = admit(client, body)
    took = time.monotonic() - started
    assert BUDGET - 0.2 <= took < BUDGET + 3, took
    expected = f"{stuck}: cannot be verified now: not verified within the time budget of 2s"
    if namespace == "payments":
        assert answer["allowed"] is False
        assert expected in answer["status"]["message"]
        assert "denied 1 of 2 image(s)" in answer["status"]["message"]
    else:
        assert answer["allowed"] is True
        assert answer["warnings"] == [f"sigverify (audit, policy audit-only): {expected}"]
    # The signed image finished in time and is not named.
    assert images.signed.tag_reference not in json.dumps(answer)


# -- a malformed section ------------------------------------------------------------------------


def malformed() -> dict[str, Any]:
    """The policy file with a typo in a policy name in the `admission` section."""
    bad: dict[str, Any] = json.loads(json.dumps(POLICIES))
    bad["admission"]["namespaces"]["dev"] = "audit-onyl"
    return bad


def test_a_malformed_section_stops_the_start(
    start_service: ServiceFactory, policy_settings: dict[str, str], tmp_path: Path
) -> None:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(malformed()))
    settings = {**policy_settings, "policy_file": str(policy_file)}
    with pytest.raises(ServerStartError) as refused, start_service(**settings):
        pass
    assert "SIGVERIFY_POLICY_FILE" in str(refused.value)
    assert "admission.namespaces.dev: expected the name of one of `policies`" in str(refused.value)


def test_a_malformed_section_is_refused_on_reload_and_the_last_good_stays(
    start_service: ServiceFactory,
    policy_settings: dict[str, str],
    images: Images,
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(POLICIES))
    # Two workers, re-booted by SIGHUP after the bad edit (as gunicorn recycles workers): each
    # new worker finds the file invalid and serves the last good copy instead of failing to
    # boot, which would stop gunicorn.
    settings = {**policy_settings, "policy_file": str(policy_file), "workers": "2"}
    unsigned = images.unsigned.tag_reference
    with start_service(**settings) as (server, checked):
        policy_file.write_text(yaml.safe_dump(malformed()))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        warnings: list[str] = []
        while time.monotonic() < deadline:
            warnings = checked.get("/readyz").json()["warnings"]
            if any("policy file rejected" in w for w in warnings):
                break
            time.sleep(0.2)
        (rejected,) = [w for w in warnings if "policy file rejected" in w]
        assert "admission.namespaces.dev: expected the name of one of `policies`" in rejected
        # Still the good version: dev audits, payments enforces.
        dev = admit(checked, review("pod-create.json", "dev", unsigned, unsigned))
        assert dev["allowed"] is True and dev["auditAnnotations"]["policy"] == "audit-only"
        payments = admit(checked, review("pod-create.json", "payments", unsigned, unsigned))
        assert payments["allowed"] is False
        # Every worker, old or new, answers so: ask more times than there are workers.
        for _ in range(8):
            again = admit(checked, review("pod-create.json", "dev", unsigned, unsigned))
            assert again["auditAnnotations"]["policy"] == "audit-only"
        assert server.proc.poll() is None
