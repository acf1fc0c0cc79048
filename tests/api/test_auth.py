"""Bearer tokens and tenants: who may call what, and which policies they see."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from service.api.auth import certificate_names, load_admission_callers, peer_certificate
from service.app import create_app
from service.config import Settings, SettingsError
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient

TOKEN_A = "token-for-platform-0123456789"
TOKEN_B = "token-for-team-b-0123456789ab"
POLICIES = b"""
policies:
  - name: release
    tenant: platform
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
  - name: team-b-only
    tenant: team-b
    mode: audit
    policy: {certificateIdentity: b@b.c, certificateOidcIssuer: https://accounts.google.com}
"""


@pytest.fixture
def client(tmp_path: Path) -> CheckedClient:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(POLICIES)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# tenant token\nteam-b {TOKEN_B}\n")
    settings = Settings(
        data_dir=tmp_path / "data",
        rekor_url=NO_REKOR,
        policy_file=policy_file,
        api_tokens=(("platform", TOKEN_A),),
        api_tokens_file=tokens_file,
        inline_policies=False,
    )
    app = create_app(settings)
    return CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/verify"), ("POST", "/v1/verify/batch"), ("GET", "/v1/policies")],
)
@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong-token-0123456789"), {"Authorization": TOKEN_A}]
)
def test_protected_endpoints_need_a_valid_token(
    client: CheckedClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN_A not in response.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/version", "/openapi.yaml", "/v1/keys"])
def test_public_endpoints_stay_open(client: CheckedClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_each_tenant_sees_only_its_policies(client: CheckedClient) -> None:
    mine = client.get("/v1/policies", headers=bearer(TOKEN_A)).json()
    assert [p["name"] for p in mine["policies"]] == ["release"]
    assert mine["inlinePolicies"] is False
    theirs = client.get("/v1/policies", headers=bearer(TOKEN_B)).json()
    assert [(p["name"], p["mode"]) for p in theirs["policies"]] == [("team-b-only", "audit")]


def test_another_tenants_policy_is_as_if_absent(client: CheckedClient) -> None:
    body = {"image": "127.0.0.1/a/b:v1", "policyName": "team-b-only"}
    response = client.post("/v1/verify", json=body, headers=bearer(TOKEN_A))
    assert response.status_code == 404
    assert response.json()["type"].endswith("/policy-not-found")
    absent = client.post("/v1/verify", json={**body, "policyName": "nope"}, headers=bearer(TOKEN_A))
    assert absent.json()["detail"].replace("nope", "team-b-only") == response.json()["detail"]
    # Its owner gets past the policy, as far as the outbound guard (a loopback registry).
    owned = client.post("/v1/verify", json=body, headers=bearer(TOKEN_B))
    assert owned.status_code == 403 and owned.json()["type"].endswith("/registry-refused")


def test_inline_policies_can_be_switched_off(client: CheckedClient) -> None:
    body = {"image": "127.0.0.1/a/b:v1", "policy": {"certificateIdentity": "a@b.c"}}
    response = client.post("/v1/verify", json=body, headers=bearer(TOKEN_A))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/inline-policies-off")


def test_policy_and_policy_name_are_exclusive(client: CheckedClient) -> None:
    body = {"image": "ghcr.io/a/b:v1", "policyName": "release", "policy": {"keys": ["x"]}}
    response = client.post("/v1/verify", json=body, headers=bearer(TOKEN_A))
    assert response.status_code == 400
    assert "policyName" in response.json()["errors"]


def test_readyz_warns_when_auth_is_off(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, rekor_url=NO_REKOR))
    warnings = app.test_client().get("/readyz").get_json()["warnings"]
    assert any("no API tokens" in w for w in warnings)


@pytest.mark.parametrize(
    ("line", "fragment"), [("team-b short", "16+"), ("only-one-field", "tenant token")]
)
def test_bad_token_files_stop_the_start(tmp_path: Path, line: str, fragment: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(line + "\n")
    with pytest.raises(SettingsError, match="SIGVERIFY_API_TOKENS_FILE") as refused:
        create_app(Settings(data_dir=tmp_path, rekor_url=NO_REKOR, api_tokens_file=tokens))
    assert fragment in str(refused.value)
    assert "short" not in str(refused.value).replace("16+", "")  # the token is not echoed


def test_a_token_given_to_two_tenants_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        rekor_url=NO_REKOR,
        api_tokens=(("a", TOKEN_A), ("b", TOKEN_A)),
    )
    with pytest.raises(SettingsError, match="tenants a and b"):
        create_app(settings)


def test_tokens_from_the_environment_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SIGVERIFY_API_TOKENS"):
        Settings.from_env({"SIGVERIFY_API_TOKENS": "platform=short"})
    parsed = Settings.from_env({"SIGVERIFY_API_TOKENS": f"platform={TOKEN_A}, b={TOKEN_B}"})
    assert parsed.api_tokens == (("platform", TOKEN_A), ("b", TOKEN_B))
    assert TOKEN_A not in repr(parsed)


# -- the admission webhook's caller -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("short\n", "line 1: expected one token of 16+ characters"),
        ("# only a comment\n\n", "no token in the file"),
        ("webhook-token-0123456789 extra\n", "line 1: expected one token"),
    ],
)
def test_a_bad_admission_token_file_stops_the_start(
    tmp_path: Path, text: str, fragment: str
) -> None:
    token_file = tmp_path / "webhook-tokens"
    token_file.write_text(text)
    with pytest.raises(SettingsError, match=re.escape(fragment)):
        load_admission_callers(Settings(admission_token_file=token_file))


def test_admission_callers_from_settings(tmp_path: Path) -> None:
    assert not load_admission_callers(Settings()).enabled
    token_file = tmp_path / "webhook-tokens"
    token_file.write_text(
        "# current, then next\nwebhook-token-0123456789\nwebhook-token-abcdefghij\n"
    )
    callers = load_admission_callers(Settings(admission_token_file=token_file))
    assert callers.enabled and not callers.client_certificate
    assert callers.token_matches("webhook-token-abcdefghij")
    assert not callers.token_matches("webhook-token-012345678")
    assert not callers.token_matches("")


def test_certificate_names_are_the_common_names_and_dns_sans() -> None:
    """As `ssl.SSLSocket.getpeercert()` decodes a verified certificate."""
    peer = {
        "subject": ((("organizationName", "system:masters"),), (("commonName", "apiserver"),)),
        "subjectAltName": (("DNS", "kube-apiserver"), ("IP Address", "10.0.0.1"),
                           ("URI", "spiffe://cluster/apiserver")),
    }  # fmt: skip
    assert certificate_names(peer) == {"apiserver", "kube-apiserver"}
    assert certificate_names({}) == set()


def test_without_gunicorns_tls_socket_there_is_no_peer_certificate() -> None:
    assert peer_certificate({}) is None
    assert peer_certificate({"gunicorn.socket": object()}) is None


def test_the_webhook_refuses_in_process_calls_when_a_certificate_is_required(
    tmp_path: Path,
) -> None:
    """No TLS socket, no certificate: a 403 problem before the review is even read."""
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(POLICIES)
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    settings = Settings(
        data_dir=tmp_path / "data",
        rekor_url=NO_REKOR,
        policy_file=policy_file,
        admission_policy="release",
        admission_client_ca_file=ca,
    )
    app = create_app(settings)
    with CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://s") as c:
        refused = c.post("/v1/admission", content=b"not even json")
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/admission-caller-refused")
