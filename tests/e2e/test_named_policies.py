"""Named policies with audit and enforce, behind API tokens, end to end under gunicorn."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import ServiceFactory
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

TOKEN = "platform-token-0123456789abcdef"
RIGHT = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
WRONG = {**RIGHT, "certificateIdentity": "https://github.com/acme/other/x.yml@refs/heads/main"}


def test_audit_reports_enforce_blocks(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry_signer: RegistrySigner,
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policies.yaml"
    policies = [
        {"name": "release", "tenant": "platform", "mode": "enforce", "policy": RIGHT},
        {"name": "strict", "tenant": "platform", "mode": "enforce", "policy": WRONG},
        {"name": "rollout", "tenant": "platform", "mode": "audit", "policy": WRONG},
    ]
    policy_file.write_text(yaml.safe_dump({"policies": policies}))
    image = registry_signer.image("named/app")
    registry_signer.sign(image)
    settings = {
        "rekor_url": sigstore_local.url,
        "trust_root_file": str(sigstore_local.trusted_root_path),
        "policy_file": str(policy_file),
        "api_tokens": f"platform={TOKEN}",
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with start_service(**settings) as (server, client):

        def verdict(name: str) -> dict[str, Any]:
            body = {"image": image.reference, "policyName": name}
            response = client.post("/v1/verify", json=body, headers=auth)
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found

        passed = verdict("release")
        assert (passed["verified"], passed["enforced"]) == (True, True)
        assert passed["policy"] == {
            "digest": passed["policy"]["digest"],
            "name": "release",
            "mode": "enforce",
        }
        blocked = verdict("strict")
        assert (blocked["verified"], blocked["enforced"]) == (False, True)
        audited = verdict("rollout")
        assert (audited["verified"], audited["enforced"]) == (False, False)
        assert audited["reasons"]
        # The policy's name is signed into the verdict.
        envelope = audited["signedVerdict"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        assert statement["predicate"]["policy"]["uri"] == "sigverify:policy/rollout"
        assert statement["predicate"]["verificationResult"] == "FAILED"

        batch = client.post(
            "/v1/verify/batch",
            json={"images": [{"image": image.reference, "policyName": "rollout"}]},
            headers=auth,
        ).json()
        assert (batch["verified"], batch["passed"]) == (False, True)
        assert (
            client.post(
                "/v1/verify", json={"image": image.reference, "policyName": "release"}
            ).status_code
            == 401
        )

        # An edited file is picked up; a broken one is refused whole and the last stays.
        policies[2]["policy"] = RIGHT
        policy_file.write_text(yaml.safe_dump({"policies": policies}))
        # (Each worker looks at the file at most once a second.)
        deadline = time.monotonic() + 10
        while verdict("rollout")["verified"] is not True and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(verdict("rollout")["verified"] is True for _ in range(8))
        policy_file.write_text("policies: [broken")
        deadline = time.monotonic() + 10
        rejected = 0
        while rejected < 4 and time.monotonic() < deadline:
            ready = client.get("/readyz").json()
            rejected += ready["checks"]["policies"]["ok"] is False
            time.sleep(0.1)
        assert rejected >= 4
        assert all(verdict("rollout")["verified"] is True for _ in range(8))
    assert TOKEN not in server.log_path.read_text()
