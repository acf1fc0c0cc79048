"""`GET /v1/badge` in process: the rate limit answers a badge too, and names a badge may not
show cost nothing. Verdicts are end to end in tests/e2e/test_badge.py; here the only image is
on loopback, refused by the outbound-address guard before any connection."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
import yaml

from service.app import create_app
from service.config import Settings
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient

IDENTITY = {"certificateIdentity": "a@b.c", "certificateOidcIssuer": "https://accounts.google.com"}
IMAGE = "127.0.0.1:1/shop/app:v1"


@pytest.fixture
def limited(tmp_path: Path) -> CheckedClient:
    """One verification a minute; one public policy and one that is not."""
    policy_file = tmp_path / "policies.yaml"
    policies = [
        {"name": "release", "tenant": "platform", "public": True, "policy": IDENTITY},
        {"name": "private", "tenant": "platform", "policy": IDENTITY},
    ]
    policy_file.write_text(yaml.safe_dump({"policies": policies}))
    settings = Settings(
        data_dir=tmp_path / "data",
        rekor_url=NO_REKOR,
        policy_file=policy_file,
        rate_limit_per_minute=1,
    )
    app = create_app(settings)
    return CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify")


def _said(response: httpx.Response) -> str:
    root = ET.fromstring(response.content)  # noqa: S314 - our own service's output
    return str(root.get("aria-label"))


def test_past_the_rate_limit_a_badge_says_so(limited: CheckedClient) -> None:
    params = {"image": IMAGE, "policy": "release"}
    first = limited.get("/v1/badge", params=params)
    assert first.status_code == 200 and _said(first) == "sigstore: error"
    second = limited.get("/v1/badge", params=params)
    assert second.status_code == 429
    assert _said(second) == "sigstore: rate limited"
    assert int(second.headers["retry-after"]) >= 1
    assert second.headers["cache-control"] == "no-store"
    as_json = limited.get("/v1/badge", params={**params, "format": "json"})
    assert as_json.status_code == 429
    assert as_json.json()["type"].endswith("/rate-limited")


def test_names_a_badge_may_not_show_are_not_charged(limited: CheckedClient) -> None:
    for _ in range(3):
        hidden = limited.get("/v1/badge", params={"image": IMAGE, "policy": "private"})
        assert _said(hidden) == "sigstore: unknown policy"
    # The minute's one verification is still there for the public policy.
    shown = limited.get("/v1/badge", params={"image": IMAGE, "policy": "release"})
    assert shown.status_code == 200 and _said(shown) == "sigstore: error"
