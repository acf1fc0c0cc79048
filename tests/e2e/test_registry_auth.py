"""A private registry end to end: credentials from a docker config.json, as operators mount them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}


def test_basic_auth_from_docker_config(
    start_service: ServiceFactory,
    basic_auth_registry: RegistryServer,
    sigstore_local: LocalSigstore,
    tmp_path: Path,
) -> None:
    host = basic_auth_registry.host
    with sigstore_local.registry_signer(
        basic_auth_registry.url, auth=("tester", "s3cret-pass")
    ) as signer:
        image = signer.image("private/app")
        signer.sign(image)
    config = tmp_path / "config.json"
    token = base64.b64encode(b"tester:s3cret-pass").decode()
    config.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    wrong = tmp_path / "wrong.json"
    bad = base64.b64encode(b"tester:not-the-password").decode()
    wrong.write_text(json.dumps({"auths": {host: {"auth": bad}}}))
    common = {
        "rekor_url": sigstore_local.url,
        "trust_root_file": str(sigstore_local.trusted_root_path),
        "insecure_registries": host,
    }
    body = {"image": image.reference, "policy": POLICY}
    with start_service(docker_config=str(config), **common) as (_, client):
        response = client.post("/v1/verify", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["verified"] is True
    for settings in ({}, {"docker_config": str(wrong)}):
        with start_service(**settings, **common) as (server, client):
            response = client.post("/v1/verify", json=body)
            assert response.status_code == 502, response.text
            assert response.json()["type"].endswith("/registry-unauthorized")
            # The password is never echoed back or logged.
            assert "not-the-password" not in response.text
            log = server.log_path.read_text()
            assert "not-the-password" not in log and bad not in log
