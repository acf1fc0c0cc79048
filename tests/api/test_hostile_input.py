"""No input makes a 5xx: generated image references and policies against the app in process.

Every answer must be a 2xx or a 4xx; a 4xx is problem+json, and a 400 names at least one
field in `errors`; every response is also checked against openapi.yaml (`CheckedClient`).
The inputs (tests/hostile.py) are built around the real grammar and mixed with arbitrary
values, NaN, infinities, integers past 2^53 and lone surrogates. They found the 500s this file
pins: `0177.0.0.1`, `127.000.000.001`, `image@sha512:...`, NaN and 2^53 in conditions, lone
surrogates in policy strings.

Nothing leaves the process: the app refuses every registry before any lookup
(`SIGVERIFY_REGISTRY_ALLOW=127.0.0.1` refuses other hosts by name, and loopback is not
allowed), and Rekor is a closed loopback port. Seeded (`derandomize`) and bounded: the
examples below take about 15 s of CPU together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from service.app import create_app
from service.config import Settings
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient
from tests.hostile import ANY_REFERENCES, JSON_VALUES, POLICIES, SCALARS

SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NAMED = "release"
POLICY_FILE = f"""\
policies:
  - name: {NAMED}
    tenant: platform
    policy:
      certificateIdentity: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
      certificateOidcIssuer: https://token.actions.githubusercontent.com
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("hostile")
    policy_file = tmp / "policies.yaml"
    policy_file.write_text(POLICY_FILE)
    settings = Settings(
        data_dir=tmp / "data",
        rekor_url=NO_REKOR,
        registry_allow=("127.0.0.1",),
        allow_loopback=False,
        policy_file=policy_file,
    )
    transport = httpx.WSGITransport(app=create_app(settings))
    with CheckedClient(transport=transport, base_url="http://sigverify") as c:
        yield c


def no_server_error(response: httpx.Response) -> None:
    status = response.status_code
    assert status < 500, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text
        problem = response.json()
        assert problem["status"] == status and problem["detail"]
        if status == 400:
            assert problem.get("errors"), problem  # names the field


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    """`body` as JSON, NaN and all (json.dumps writes NaN, Infinity, and \\ud800 escapes)."""
    content = json.dumps(body, allow_nan=True).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


POLICY_CHOICE = st.one_of(
    POLICIES.map(lambda p: {"policy": p}),
    st.just({"policyName": NAMED}),
    SCALARS.map(lambda name: {"policyName": name}),
)
EXTRA = st.dictionaries(st.sampled_from(["extra", "image", "policy", "images"]), JSON_VALUES)


@SETTINGS
@given(image=ANY_REFERENCES)
def test_any_reference_answers_no_5xx(client: httpx.Client, image: str) -> None:
    """With a policy that is fine, every reference gets as far as it can: the registry."""
    no_server_error(post(client, "/v1/verify", {"image": image, "policyName": NAMED}))


@SETTINGS
@given(policy=POLICIES)
def test_any_policy_answers_no_5xx(client: httpx.Client, policy: Any) -> None:
    """With a reference that is fine, every policy gets as far as it can: the registry."""
    no_server_error(post(client, "/v1/verify", {"image": "127.0.0.1/a/b:v1", "policy": policy}))


@SETTINGS
@given(image=ANY_REFERENCES | SCALARS, choice=POLICY_CHOICE, extra=st.none() | EXTRA)
def test_any_request_answers_no_5xx(
    client: httpx.Client, image: Any, choice: dict[str, Any], extra: dict[str, Any] | None
) -> None:
    body = {"image": image, **choice, **(extra or {})}
    no_server_error(post(client, "/v1/verify", body))


@SETTINGS
@given(images=st.lists(ANY_REFERENCES, min_size=0, max_size=3), choice=POLICY_CHOICE)
def test_batch_answers_no_5xx(
    client: httpx.Client, images: list[str], choice: dict[str, Any]
) -> None:
    body = {"images": [{"image": image} for image in images], **choice}
    response = post(client, "/v1/verify/batch", body)
    no_server_error(response)
    if response.status_code == 200:  # each image's own answer holds to the same
        for result in response.json()["results"]:
            assert result["status"] < 500, result


BUNDLES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"mediaType": st.sampled_from(["application/vnd.dev.sigstore.bundle.v0.3+json"])},
        optional={
            "verificationMaterial": JSON_VALUES,
            "messageSignature": JSON_VALUES,
            "dsseEnvelope": JSON_VALUES,
        },
    ),
)


@SETTINGS
@given(bundle=BUNDLES, digest=ANY_REFERENCES, choice=POLICY_CHOICE)
def test_verify_bundle_answers_no_5xx(
    client: httpx.Client, bundle: Any, digest: str, choice: dict[str, Any]
) -> None:
    body = {"bundle": bundle, "artifactDigest": digest.rpartition("@")[2], **choice}
    no_server_error(post(client, "/v1/verify/bundle", body))


@SETTINGS
@given(image=ANY_REFERENCES, policy=st.sampled_from([NAMED, "", "Nope", "a" * 70]))
def test_badge_answers_no_5xx(client: httpx.Client, image: str, policy: str) -> None:
    """A badge always renders: a bad query is a 400 SVG that names the field (the shields.io
    JSON format keeps the problem+json answer)."""
    response = client.get("/v1/badge", params={"image": image, "policy": policy})
    assert response.status_code < 500, response.text
    if response.status_code == 400:
        assert response.headers["content-type"].startswith("image/svg+xml"), response.text
        assert 'aria-label="sigstore: invalid' in response.text
    as_json = client.get("/v1/badge", params={"image": image, "policy": policy, "format": "json"})
    no_server_error(as_json)


def test_the_app_refuses_every_registry_before_a_lookup(client: httpx.Client) -> None:
    """What keeps this file on loopback: names are refused by name, loopback as loopback."""
    for image in ("ghcr.io/a/b:v1", "127.0.0.1:5000/a/b:v1", "nginx"):
        response = post(client, "/v1/verify", {"image": image, "policyName": NAMED})
        assert response.status_code == 403, response.text
