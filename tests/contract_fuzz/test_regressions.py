"""What test_schemathesis.py found, pinned as plain tests (in process, no network) so a change
of the spec or of the generator's draws cannot quietly let it back in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from service.app import create_app
from service.config import Settings
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient, spec

POLICIES = b"""
policies:
  - name: gate
    tenant: platform
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
"""
POLICY = {"certificateIdentity": "a@b.c", "certificateOidcIssuer": "https://accounts.google.com"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    """The app with one named policy, also the admission webhook's."""
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(POLICIES)
    settings = Settings(
        data_dir=tmp_path / "data",
        rekor_url=NO_REKOR,
        policy_file=policy_file,
        admission_policy="gate",
    )
    transport = httpx.WSGITransport(app=create_app(settings))
    with CheckedClient(transport=transport, base_url="http://sigverify") as c:
        yield c


@pytest.mark.parametrize("value", [0, 1, "yes", "on", "true", None])
@pytest.mark.parametrize("field", ["required", "allowInclusionPromise"])
def test_transparency_log_flags_are_json_booleans(
    client: httpx.Client, field: str, value: Any
) -> None:
    """marshmallow's Boolean read 0, 1, "yes" and "on" as booleans; the spec says boolean."""
    policy = {**POLICY, "transparencyLog": {field: value}}
    body = {"artifactDigest": "sha256:" + "0" * 64, "bundle": {"mediaType": "x"}, "policy": policy}
    response = client.post("/v1/verify", json={"image": "example.com/app:v1", "policy": policy})
    assert response.status_code == 400
    assert f"policy.transparencyLog.{field}" in response.json()["errors"]
    body["bundle"] = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}
    response = client.post("/v1/verify/bundle", json=body)
    assert response.status_code == 400
    assert f"policy.transparencyLog.{field}" in response.json()["errors"]


@pytest.mark.parametrize("operation", [{}, [], ["CREATE"], 7, None])
def test_an_admission_operation_that_is_not_a_string_is_a_400(
    client: httpx.Client, operation: Any
) -> None:
    """An unhashable `operation` (an object or a list) was a 500: `in` a frozenset raised."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": operation},
    }
    response = client.post("/v1/admission", json=review)
    assert response.status_code == 400
    assert "request.operation" in response.json()["errors"]


def test_the_spec_is_served_as_the_yaml_mapping_it_documents(client: httpx.Client) -> None:
    """openapi.yaml documented its own body as a string; a YAML client reads a mapping."""
    response = client.get("/openapi.yaml")
    documented = spec()["paths"]["/openapi.yaml"]["get"]["responses"]["200"]["content"]
    jsonschema.validate(yaml.safe_load(response.text), documented["application/yaml"]["schema"])
