"""`POST /v1/verify` refuses malformed requests with a 400 that names the field, before any I/O.

The app here has default settings: loopback registries are refused, so a request that got past
validation would be answered 403 by the outbound guard, never by a fetch.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask

from service.app import create_app
from service.config import Settings

IDENTITY = {
    "certificateIdentity": "https://github.com/a/b/.github/workflows/release.yml@refs/heads/main",
    "certificateOidcIssuer": "https://token.actions.githubusercontent.com",
}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"policy": IDENTITY}, "image"),
        ({"image": "ghcr.io/a/b:v1"}, "policy"),
        ({"image": "", "policy": IDENTITY}, "image"),
        ({"image": "ghcr.io/A/b:v1", "policy": IDENTITY}, "image"),
        ({"image": "ghcr.io/a/b:" + "x" * 200, "policy": IDENTITY}, "image"),
        ({"image": "ghcr.io/a/b@sha256:123", "policy": IDENTITY}, "image"),
        ({"image": "ghcr.io/a/b:v1", "policy": IDENTITY, "extra": 1}, "extra"),
        (
            {"image": "ghcr.io/a/b:v1", "policy": {**IDENTITY, "certificateIdentiy": "x"}},
            "policy.certificateIdentiy",
        ),
        ({"image": "ghcr.io/a/b:v1", "policy": {**IDENTITY, "threshold": 0}}, "policy.threshold"),
        (
            {"image": "ghcr.io/a/b:v1", "policy": {**IDENTITY, "threshold": "2"}},
            "policy.threshold",
        ),
        ({"image": "ghcr.io/a/b:v1", "policy": {**IDENTITY, "keys": [""]}}, "policy.keys.0"),
        (
            {"image": "ghcr.io/a/b:v1", "policy": {**IDENTITY, "transparencyLog": {"x": True}}},
            "policy.transparencyLog.x",
        ),
        ({"image": ["ghcr.io/a/b:v1"], "policy": IDENTITY}, "image"),
    ],
)
def test_malformed_fields_are_named(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    found = problem(client.post("/v1/verify", json=body), 400)
    assert field in found["errors"], found
    assert field in found["detail"]


@pytest.mark.parametrize(
    ("policy", "field", "fragment"),
    [
        ({}, "policy", "at least one"),
        ({"certificateOidcIssuer": "https://issuer"}, "policy.certificateIdentity", "any signer"),
        (
            {**IDENTITY, "certificateIdentityRegexp": "^x$"},
            "policy.certificateIdentityRegexp",
            "found both",
        ),
        (
            {"certificateIdentityRegexp": "(", "certificateOidcIssuer": "https://i"},
            "policy.certificateIdentityRegexp",
            "invalid regexp",
        ),
        (
            {"certificateIdentityRegexp": "a" * 257, "certificateOidcIssuer": "https://i"},
            "policy.certificateIdentityRegexp",
            "at most 256",
        ),
        (
            {**IDENTITY, "extensions": {"noSuchClaim": "x"}},
            "policy.extensions.noSuchClaim",
            "unknown fulcio extension",
        ),
        ({"keys": ["not a pem"]}, "policy.keys[0]", "key"),
        ({"identities": [{"certificateOidcIssuer": "https://i"}]}, "policy.identities[0]", ""),
    ],
)
def test_meaningless_policies_are_refused(
    client: httpx.Client, policy: dict[str, Any], field: str, fragment: str
) -> None:
    body = problem(
        client.post("/v1/verify", json={"image": "ghcr.io/a/b:v1", "policy": policy}), 400
    )
    (name,) = body["errors"]
    assert name.startswith(field), body
    assert fragment in body["detail"]


def test_backtracking_bombs_are_linear_under_re2(client: httpx.Client) -> None:
    """A regexp that would backtrack for ever in Python's `re` is accepted and cheap in RE2.

    It gets as far as the outbound guard (a 403 for this loopback registry), not a hang.
    """
    policy = {"certificateIdentityRegexp": "^(a+)+$", "certificateOidcIssuer": "https://i"}
    image = "127.0.0.1/a/b:v1"
    body = problem(client.post("/v1/verify", json={"image": image, "policy": policy}), 403)
    assert body["type"].endswith("/registry-refused")


@pytest.mark.parametrize(
    "content", [b"not json", b"[1, 2]", b'"text"', b"{", b'{"image": "a", "policy": {}'], ids=repr
)
def test_bodies_that_are_not_an_object(client: httpx.Client, content: bytes) -> None:
    response = client.post(
        "/v1/verify", content=content, headers={"content-type": "application/json"}
    )
    assert "JSON object" in problem(response, 400)["detail"]


def test_json_without_its_content_type(client: httpx.Client) -> None:
    response = client.post(
        "/v1/verify",
        content=b'{"image": "ghcr.io/a/b:v1", "policy": {}}',
        headers={"content-type": "text/plain"},
    )
    assert "Content-Type: application/json" in problem(response, 400)["detail"]


def test_a_body_above_the_limit_is_413(client: httpx.Client) -> None:
    policy = {**IDENTITY, "keys": ["k" * 16000] * 5}
    found = problem(
        client.post("/v1/verify", json={"image": "ghcr.io/a/b:v1", "policy": policy}), 413
    )
    assert found["title"] == "Request Entity Too Large"


@pytest.mark.parametrize(
    "image",
    [
        "127.0.0.1/a/b:v1",
        "127.0.0.2:5000/a/b:v1",
        "[::ffff:127.0.0.1]:5000/a/b:v1",
        "[::1]/a/b:v1",
        "localhost:1/a/b:v1",
    ],
)
def test_loopback_registries_are_refused_by_default(
    app: Flask, client: httpx.Client, image: str
) -> None:
    body = problem(client.post("/v1/verify", json={"image": image, "policy": IDENTITY}), 403)
    assert body["type"].endswith("/registry-refused")
    assert body["reason"] == "address-refused"
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "registry",
    ["0177.0.0.1", "127.000.000.001", "127.0.0.01:5000", "127.1", "0x7f.1:5000", "2130706433:5000"],
)
@pytest.mark.parametrize("allow_loopback", [False, True])
def test_non_canonical_ipv4_hosts_are_invalid_references(
    tmp_path: Any, registry: str, allow_loopback: bool
) -> None:
    """Found from outside: the reference parser took `0177.0.0.1`, then the HTTP client raised
    (a 500). Such spellings mean different addresses to different parsers: a 400 naming
    `image`, whether loopback is allowed or not, and nothing is fetched."""
    settings = Settings(
        data_dir=tmp_path, rekor_url="http://127.0.0.1:1", allow_loopback=allow_loopback
    )
    client = create_app(settings).test_client()
    response = client.post("/v1/verify", json={"image": f"{registry}/a/b:v1", "policy": IDENTITY})
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body["errors"]) == ["image"]
    assert "a.b.c.d in decimal" in body["errors"]["image"][0]


def test_sha512_image_digests_are_invalid_references(client: httpx.Client) -> None:
    """Signatures and verdicts name an image by its sha256: an `@sha512:` reference could
    never verify, so it is a 400 naming `image` rather than a fetch that ends in a 500."""
    image = "127.0.0.1:5000/a/b@sha512:" + "ab" * 64
    body = problem(client.post("/v1/verify", json={"image": image, "policy": IDENTITY}), 400)
    assert list(body["errors"]) == ["image"]
    assert "sha256" in body["errors"]["image"][0]


def test_registry_lists_are_applied_before_any_lookup(tmp_path: Any) -> None:
    settings = Settings(
        data_dir=tmp_path, rekor_url="http://127.0.0.1:1", registry_deny=("*.internal",)
    )
    client = create_app(settings).test_client()
    response = client.post(
        "/v1/verify", json={"image": "registry.corp.internal/a/b:v1", "policy": IDENTITY}
    )
    assert response.status_code == 403
    assert "deny-list" in response.get_json()["detail"]


@pytest.mark.parametrize("path", ["/v1/verify", "/v1/verify/batch", "/v1/verify/bundle"])
def test_a_body_nested_too_deeply_is_400_not_500(client: httpx.Client, path: str) -> None:
    """Under the body limit, yet deeper than the JSON parser recurses: invalid JSON, a 400."""
    deep = b"[" * 30_000 + b"]" * 30_000
    response = client.post(path, content=deep, headers={"content-type": "application/json"})
    assert "must be a JSON object" in problem(response, 400)["detail"]
    # and the service still answers
    assert client.get("/healthz").status_code == 200


def _attested(condition: str) -> bytes:
    """A /v1/verify body (as text, to hold what json.dumps would not write) whose policy
    requires an attestation with one condition."""
    identity = '"certificateIdentity": "a@b.c", "certificateOidcIssuer": "https://i"'
    return (
        f'{{"image": "127.0.0.1/a/b:v1", "policy": {{{identity}, "attestations": '
        f'[{{"predicateType": "slsaprovenance", "conditions": [{condition}]}}]}}}}'
    ).encode()


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (_attested('{"path": "a", "equals": NaN}'), "policy.attestations.0.conditions.0.equals"),
        (
            _attested('{"path": "a", "in": [1, Infinity]}'),
            "policy.attestations.0.conditions.0.in.1",
        ),
        (
            _attested('{"path": "a", "equals": -Infinity}'),
            "policy.attestations.0.conditions.0.equals",
        ),
        (b'{"image": NaN, "policy": {}}', "image"),
        (
            b'{"image": "127.0.0.1/a/b:v1", "policy": {"certificateIdentity": "\\ud800"}}',
            "policy.certificateIdentity",
        ),
        (b'{"image": "127.0.0.1/a/b:v1", "policy": {"keys": ["\\udfff"]}}', "policy.keys.0"),
        # the bytes of a surrogate (invalid UTF-8, which Python's json reads all the same)
        (
            b'{"image": "127.0.0.1/a/b:v1", "policy": {"certificateIdentity": "\xed\xa0\x80"}}',
            "policy.certificateIdentity",
        ),
        (b'{"image": "a/b:v1", "image": "127.0.0.1/a/b:v1", "policy": {}}', "body"),
    ],
)
def test_bodies_that_are_not_i_json_are_400_naming_the_field(
    client: httpx.Client, content: bytes, field: str
) -> None:
    """Found from outside: conditions with NaN answered 500; lone surrogates did too (in the
    policy digest and RE2). Python's json reads NaN, surrogates and repeated member names;
    RFC 8259 and I-JSON (RFC 7493) do not, so the request parser refuses them."""
    response = client.post(
        "/v1/verify", content=content, headers={"content-type": "application/json"}
    )
    body = problem(response, 400)
    assert "JSON object" in body["detail"] and "not I-JSON" in body["detail"]
    assert list(body["errors"]) == [field], body


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ('{"path": "a", "equals": 9007199254740993}', "equals"),
        ('{"path": "a", "equals": -9007199254740992}', "equals"),
        ('{"path": "a", "equals": 1e400}', "equals"),  # Python reads it as inf
        ('{"path": "a", "in": ["x", 18446744073709551616]}', "in[1]"),
    ],
)
def test_numbers_beyond_2_53_in_conditions_are_400_naming_the_field(
    client: httpx.Client, condition: str, field: str
) -> None:
    """Found from outside: integers beyond 2^53 in `equals`/`in` answered 500 (the policy
    digest's RFC 8785 refused them). They are not exact in JSON: a 400 naming the field."""
    response = client.post(
        "/v1/verify", content=_attested(condition), headers={"content-type": "application/json"}
    )
    body = problem(response, 400)
    assert list(body["errors"]) == [f"policy.attestations[0].conditions[0].{field}"], body


@pytest.mark.parametrize("path", ["/v1/verify/batch", "/v1/verify/bundle"])
def test_the_other_json_endpoints_read_i_json_too(client: httpx.Client, path: str) -> None:
    response = client.post(
        path,
        content=b'{"policy": {"threshold": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert list(problem(response, 400)["errors"]) == ["policy.threshold"]
