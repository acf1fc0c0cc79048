"""`POST /v1/gatekeeper/{policy}` in process: the ProviderRequest/ProviderResponse protocol,
tenancy, refusals as ProviderResponses, settings. Verification itself, TLS, client
certificates and the time budget are end to end in tests/e2e/test_gatekeeper.py; here the only
images are on loopback, which the outbound-address guard refuses before any connection, so a
key is always an error item and no test touches the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.gatekeeper import (
    API_VERSION,
    ProviderRequestError,
    item_for,
    parse_provider_request,
)
from service.api.verify import ChosenPolicy
from service.app import create_app
from service.config import Settings, SettingsError
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient

POLICIES = b"""
policies:
  - name: release
    tenant: platform
    mode: enforce
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
  - name: watch
    tenant: platform
    mode: audit
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
  - name: theirs
    tenant: payments
    policy: {certificateIdentity: x@y.z, certificateOidcIssuer: https://accounts.google.com}
"""
TOKEN = "platform-token-0123456789abcdef"
APP = "127.0.0.1:1/shop/app:v1"  # refused by the address guard, never connected to
SIDECAR = "127.0.0.1:1/shop/sidecar:v2"


def provider_request(keys: Any, version: str = API_VERSION) -> dict[str, Any]:
    """A ProviderRequest as Gatekeeper's `external_data` builtin marshals it."""
    return {"apiVersion": version, "kind": "ProviderRequest", "request": {"keys": keys}}


def make_client(tmp_path: Path, **settings: Any) -> CheckedClient:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(POLICIES)
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rekor_url": NO_REKOR,
        "policy_file": policy_file,
        "gatekeeper_tenant": "platform",
        "api_tokens": (("platform", TOKEN),),
    }
    app = create_app(Settings(**{**base, **settings}))
    return CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify")


@pytest.fixture
def gatekeeper(tmp_path: Path) -> CheckedClient:
    return make_client(tmp_path)


def system_error(response: httpx.Response, status: int) -> str:
    """The `systemError` of a refusal, which is a ProviderResponse like any answer."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["apiVersion"], body["kind"]) == (API_VERSION, "ProviderResponse")
    assert "items" not in body["response"]
    error: str = body["response"]["systemError"]
    assert error
    return error


# -- the protocol -------------------------------------------------------------------------------


def test_each_key_is_answered_once_in_order_without_a_token(gatekeeper: CheckedClient) -> None:
    """Gatekeeper sends no token: the path needs none while the provider is on."""
    response = gatekeeper.post("/v1/gatekeeper/release", json=provider_request([APP, SIDECAR, APP]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["apiVersion"], body["kind"]) == (API_VERSION, "ProviderResponse")
    assert body["response"]["idempotent"] is False
    items = body["response"]["items"]
    assert [item["key"] for item in items] == [APP, SIDECAR]
    for item in items:
        assert (
            item["error"] == "cannot be verified now: its registry may not be contacted from here"
        )
        assert "value" not in item
    # Everything else still needs a token.
    assert gatekeeper.get("/v1/policies").status_code == 401


def test_an_older_gatekeeper_is_answered_in_its_version(gatekeeper: CheckedClient) -> None:
    old = "externaldata.gatekeeper.sh/v1alpha1"
    response = gatekeeper.post("/v1/gatekeeper/release", json=provider_request([APP], old))
    assert response.status_code == 200
    assert response.json()["apiVersion"] == old


def test_no_keys_is_an_empty_answer(gatekeeper: CheckedClient) -> None:
    body = {"apiVersion": API_VERSION, "kind": "ProviderRequest", "request": {}}
    response = gatekeeper.post("/v1/gatekeeper/release", json=body)
    assert response.status_code == 200
    assert response.json()["response"] == {"idempotent": False, "items": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([APP], "body"),
        ({"kind": "ProviderRequest", "request": {"keys": [APP]}}, "apiVersion"),
        (provider_request([APP], "externaldata.gatekeeper.sh/v2"), "apiVersion"),
        ({**provider_request([APP]), "kind": "ProviderResponse"}, "kind"),
        ({**provider_request([APP]), "request": [APP]}, "request"),
        (provider_request(APP), "request.keys"),
        (provider_request([APP, 7]), "request.keys[1]"),
        (provider_request([APP, " "]), "request.keys[1]"),
        (provider_request(["a" * 1025]), "request.keys[0]"),
    ],
)
def test_a_malformed_request_is_a_system_error_naming_the_field(
    gatekeeper: CheckedClient, body: Any, field: str
) -> None:
    """Not a 400 problem+json: Gatekeeper reads any body as a ProviderResponse, and one without
    items or systemError would reach Rego as an answer with nothing wrong in it."""
    error = system_error(gatekeeper.post("/v1/gatekeeper/release", json=body), 400)
    assert error.startswith(f"not a ProviderRequest {API_VERSION}: {field}: "), error


def test_not_json_is_a_system_error(gatekeeper: CheckedClient) -> None:
    response = gatekeeper.post(
        "/v1/gatekeeper/release", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert system_error(response, 400).endswith("body: expected a JSON object")


def test_more_keys_than_a_batch_may_have(tmp_path: Path) -> None:
    client = make_client(tmp_path, batch_max_images=2)
    keys = [f"127.0.0.1:1/shop/app{i}:v1" for i in range(3)]
    error = system_error(client.post("/v1/gatekeeper/release", json=provider_request(keys)), 400)
    assert "3 images, more than SIGVERIFY_BATCH_MAX_IMAGES=2" in error
    # Duplicates count once.
    assert client.post("/v1/gatekeeper/release", json=provider_request(keys[:2] * 3)).is_success


def test_a_body_over_the_limit_is_a_system_error(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_body_bytes=1024)
    keys = [f"127.0.0.1:1/shop/app{i}:v1" for i in range(60)]
    response = client.post("/v1/gatekeeper/release", json=provider_request(keys))
    assert system_error(response, 413) == "the request body is too large"


# -- tenancy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "theirs"])
def test_an_unknown_or_another_tenants_policy_is_not_found(
    gatekeeper: CheckedClient, name: str
) -> None:
    """`theirs` belongs to the tenant payments: the same answer as for a name that does not
    exist, and nothing is verified for it."""
    error = system_error(
        gatekeeper.post(f"/v1/gatekeeper/{name}", json=provider_request([APP])), 404
    )
    assert error == f"no policy named {name!r} for the Gatekeeper provider (see GET /v1/policies)"


def test_the_provider_is_off_without_a_tenant(tmp_path: Path) -> None:
    client = make_client(tmp_path, gatekeeper_tenant=None, api_tokens=())
    error = system_error(client.post("/v1/gatekeeper/release", json=provider_request([APP])), 404)
    assert "SIGVERIFY_GATEKEEPER_TENANT" in error


def test_with_the_provider_off_the_path_needs_a_token_like_any_other(tmp_path: Path) -> None:
    client = make_client(tmp_path, gatekeeper_tenant=None)
    response = client.post("/v1/gatekeeper/release", json=provider_request([APP]))
    assert system_error(response, 401).startswith("a valid API token is required")
    assert response.headers["www-authenticate"] == 'Bearer realm="sigverify"'


def test_a_client_certificate_is_required_when_its_ca_is_set(tmp_path: Path) -> None:
    """No TLS here, so no certificate: refused, as a ProviderResponse."""
    pem = tmp_path / "pem"
    pem.write_text("not read by the app; gunicorn loads it")
    client = make_client(
        tmp_path, gatekeeper_client_ca_file=pem, tls_cert_file=pem, tls_key_file=pem
    )
    response = client.post("/v1/gatekeeper/release", json=provider_request([APP]))
    error = system_error(response, 403)
    assert (
        error
        == "the Gatekeeper provider answers only OPA Gatekeeper: its client certificate is required"
    )


# -- items --------------------------------------------------------------------------------------


def test_a_failed_verification_is_a_value_not_an_error() -> None:
    from service.core import policy_from_mapping

    policy = policy_from_mapping(
        {"certificateIdentity": "a@b.c", "certificateOidcIssuer": "https://x"}
    )
    chosen = ChosenPolicy(policy, "watch", "audit")
    digest = "sha256:" + "a" * 64
    verdict = {
        "verified": False,
        "image": {"registry": "ghcr.io", "repository": "acme/app", "digest": digest,
                  "resolvedFromTag": True},
        "signers": [],
        "reasons": ["no signatures found", *(f"reason {i} " + "x" * 400 for i in range(9))],
        "verifiedAt": "2026-05-04T10:00:00Z",
        "cached": True,
    }  # fmt: skip
    item = item_for(
        "ghcr.io/acme/app:v1", {"image": "ghcr.io/acme/app:v1", "verdict": verdict}, chosen
    )
    assert set(item) == {"key", "value"}
    value = item["value"]
    assert value["verified"] is False
    assert value["image"] == f"ghcr.io/acme/app@{digest}"
    assert (value["policy"], value["mode"], value["enforced"]) == ("watch", "audit", False)
    assert value["reasons"][0] == "no signatures found"
    assert len(value["reasons"]) == 5 and all(len(r) <= 300 for r in value["reasons"])
    assert value["cached"] is True
    # `verified` is true only when the verdict says exactly true.
    for fake in ("true", 1, None):
        faked = {**verdict, "verified": fake}
        assert item_for("k", {"verdict": faked, "image": "k"}, chosen)["value"]["verified"] is False


def test_parse_keeps_the_first_of_duplicate_keys() -> None:
    version, keys = parse_provider_request(provider_request(["b", "a", "b"]), max_keys=5)
    assert (version, keys) == (API_VERSION, ("b", "a"))
    with pytest.raises(ProviderRequestError, match=r"request\.keys: 2 images"):
        parse_provider_request(provider_request(["b", "a"]), max_keys=1)


# -- settings and readiness ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"gatekeeper_client_names": ("gk",)}, "SIGVERIFY_GATEKEEPER_TENANT is empty"),
        ({"gatekeeper_tenant": "t", "gatekeeper_client_ca_file": "pem"}, "HTTPS carries"),
        ({"gatekeeper_tenant": "t", "gatekeeper_client_names": ("gk",)}, "to the CA that"),
        (
            {"gatekeeper_tenant": "t", "gatekeeper_client_ca_file": "pem",
             "admission_client_ca_file": "pem", "tls_cert_file": "pem", "tls_key_file": "pem",
             "gatekeeper_client_names": ("gk",)},
            "which certificate may call which endpoint",
        ),
    ],
)  # fmt: skip
def test_contradictory_settings_stop_the_start(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    pem = tmp_path / "pem"
    pem.write_text("x")
    values: dict[str, Any] = {k: (pem if v == "pem" else v) for k, v in settings.items()}
    with pytest.raises(SettingsError, match=message):
        Settings(**values).check()


def test_both_client_cas_with_names_for_each_are_accepted(tmp_path: Path) -> None:
    pem = tmp_path / "pem"
    pem.write_text("x")
    Settings(
        gatekeeper_tenant="t", gatekeeper_client_ca_file=pem, admission_client_ca_file=pem,
        tls_cert_file=pem, tls_key_file=pem, gatekeeper_client_names=("gk",),
        admission_client_names=("apiserver",),
    ).check()  # fmt: skip


def test_readyz_warns_when_tokens_are_on_and_no_certificate_is_asked(tmp_path: Path) -> None:
    warnings = make_client(tmp_path).get("/readyz").json()["warnings"]
    assert any("POST /v1/gatekeeper uses tenant platform's policies" in w for w in warnings)
    (tmp_path / "off").mkdir()
    off = make_client(tmp_path / "off", gatekeeper_tenant=None).get("/readyz").json()["warnings"]
    assert not any("gatekeeper" in w for w in off)
