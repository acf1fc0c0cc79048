"""`GET /v1/badge` under gunicorn: every state an SVG (or shields JSON), only public policies
answered, and a name that may not be shown answered exactly as one that does not exist.

How the SVGs look in a browser is tests/e2e/test_badge_browser.py.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

RIGHT = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
TOKEN = "badge-tests-token-0123456789"
OTHER_TOKEN = "badge-tests-other-token-0123"
SVG = "{http://www.w3.org/2000/svg}"
POLICIES = [
    {"name": "release", "tenant": "platform", "public": True, "policy": RIGHT},
    {"name": "watch", "tenant": "platform", "mode": "audit", "public": True, "policy": RIGHT},
    # The same policy, not public: its badges are never shown, to anyone.
    {"name": "private", "tenant": "platform", "policy": RIGHT},
    {"name": "theirs", "tenant": "team-b", "policy": RIGHT},
]


class CountingRegistry:
    """An HTTP "registry" on loopback that answers every request 404 and counts them, to see
    whether a badge reached for a registry at all."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                body = b'{"errors": [{"code": "NAME_UNKNOWN", "message": "unknown"}]}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def counting() -> Iterator[CountingRegistry]:
    registry = CountingRegistry()
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    counting: CountingRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CheckedClient]:
    policy_file = tmp_path_factory.mktemp("badge") / "policies.yaml"
    policy_file.write_text(yaml.safe_dump({"policies": POLICIES}))
    with start_service(
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        policy_file=str(policy_file),
        api_tokens=f"platform={TOKEN},team-b={OTHER_TOKEN}",  # badges stay public all the same
        insecure_registries=f"{registry.host},{counting.host}",
        verdict_ttl="120",
    ) as (_, client):
        yield client


def get(client: httpx.Client, image: str, policy: str = "release", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    return client.get(
        "/v1/badge", params={"image": image, "policy": policy, **extra}, headers=headers
    )


def svg_of(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("image/svg+xml"), response.text
    return ET.fromstring(response.content)  # noqa: S314 - our own service's output


def said(response: httpx.Response) -> tuple[str, str, str]:
    """(what the badge says, its state, its message box colour)."""
    root = svg_of(response)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert root.get("aria-label") == title.text
    rect = root.find(f"{SVG}g/{SVG}rect[@class='message']")
    assert rect is not None
    return title.text, str(root.get("data-state")), str(rect.get("fill"))


def test_badge_states(
    service: CheckedClient, registry_signer: RegistrySigner, registry: RegistryServer
) -> None:
    signed = registry_signer.image("badge/signed")
    registry_signer.sign(signed)
    verified = get(service, signed.reference)
    assert verified.status_code == 200
    assert said(verified)[:2] == ("sigstore: acme/app@main", "verified")
    assert verified.headers["cache-control"] == "public, max-age=120"
    other = registry_signer.image("badge/other")
    stranger = artifacts.DEFAULT_IDENTITY.replace("acme/app", "evil/app")
    registry_signer.sign(other, identity=registry_signer.signer.identity(stranger))
    unsigned = registry_signer.image("badge/unsigned")
    missing = f"{registry.host}/badge/missing:v0"
    seen = {
        "failed": said(get(service, other.reference)),
        "audit failed": said(get(service, other.reference, "watch")),
        "unsigned": said(get(service, unsigned.reference)),
        "audit unsigned": said(get(service, unsigned.reference, "watch")),
        "not found": said(get(service, missing)),
    }
    assert seen["failed"][:2] == ("sigstore: failed", "failed")
    assert seen["audit failed"][:2] == ("sigstore: failed (audit)", "audit-failed")
    assert seen["unsigned"][:2] == ("sigstore: unsigned", "unsigned")
    assert seen["audit unsigned"][:2] == ("sigstore: unsigned (audit)", "audit-unsigned")
    assert seen["not found"][:2] == ("sigstore: not found", "not-found")
    # An audit failure does not look like an enforced one.
    assert seen["failed"][2] != seen["audit failed"][2]
    assert seen["unsigned"][2] != seen["audit unsigned"][2]

    shields = get(service, signed.reference, format="json").json()
    assert shields["schemaVersion"] == 1
    assert shields["message"] == "acme/app@main"
    assert shields["color"] == said(verified)[2].lstrip("#")
    assert shields["isError"] is False
    audited = get(service, other.reference, "watch", format="json").json()
    assert (audited["message"], audited["isError"]) == ("failed (audit)", False)
    assert get(service, missing, format="json").json()["message"] == "not found"


def test_a_registry_outage_is_an_error_badge_cached_briefly(service: CheckedClient) -> None:
    # Nothing listens on port 1: the registry is "down".
    response = get(service, "127.0.0.1:1/badge/app:v1")
    assert response.status_code == 200
    assert said(response)[:2] == ("sigstore: error", "error")
    assert response.headers["cache-control"] == "public, max-age=30"
    shields = get(service, "127.0.0.1:1/badge/app:v1", format="json").json()
    assert (shields["message"], shields["isError"]) == ("error", True)


def test_a_registry_the_service_may_not_reach_is_an_error_badge(service: CheckedClient) -> None:
    """Refused by the allow-list (the e2e services allow loopback only): 403 upstream, an
    error badge here, not a broken image."""
    response = get(service, "registry.example/badge/app:v1")
    assert response.status_code == 200
    assert said(response)[1] == "error"


# -- public policies only ---------------------------------------------------------------------


def _answer_parts(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "date"}
    return response.status_code, headers, response.content


@pytest.mark.parametrize("fmt", ["svg", "json"])
def test_a_policy_a_badge_may_not_show_is_answered_as_an_unknown_one(
    service: CheckedClient, registry_signer: RegistrySigner, fmt: str
) -> None:
    signed = registry_signer.image("badge/private")
    registry_signer.sign(signed)
    public = get(service, signed.reference, format=fmt)
    assert public.status_code == 200
    answers = {
        "not public": get(service, signed.reference, "private", format=fmt),
        # A token changes nothing: not the owner's, nor another tenant's.
        "not public, owner's token": get(
            service, signed.reference, "private", format=fmt,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ),
        "another tenant's": get(
            service, signed.reference, "theirs", format=fmt,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ),
        "unknown": get(service, signed.reference, "no-such-policy", format=fmt),
    }  # fmt: skip
    parts = {name: _answer_parts(r) for name, r in answers.items()}
    first = parts["unknown"]
    for name, found in parts.items():
        assert found == first, name
    status, headers, body = first
    assert status == 200 and "etag" in headers
    if fmt == "svg":
        assert said(answers["unknown"])[:2] == ("sigstore: unknown policy", "unknown-policy")
    else:
        assert answers["unknown"].json()["message"] == "unknown policy"
    assert body != _answer_parts(public)[2]


def test_a_badge_for_a_policy_that_is_not_public_never_reaches_the_registry(
    service: CheckedClient, counting: CountingRegistry
) -> None:
    before = len(counting.paths)
    for policy in ("private", "theirs", "no-such-policy"):
        response = get(service, f"{counting.host}/badge/secret-repo:v1", policy)
        assert said(response)[1] == "unknown-policy"
    assert counting.paths[before:] == []
    # The same image under a public policy is looked up there (so the count above could fail).
    found = get(service, f"{counting.host}/badge/secret-repo:v1", "release")
    assert said(found)[1] == "not-found"
    assert any("badge/secret-repo" in path for path in counting.paths[before:])


def test_policies_list_says_which_are_public(service: CheckedClient) -> None:
    listed = service.get("/v1/policies", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    public = {p["name"]: p["public"] for p in listed["policies"]}
    assert public == {"release": True, "watch": True, "private": False}


# -- caching ------------------------------------------------------------------------------------


def test_etag_and_if_none_match(service: CheckedClient, registry_signer: RegistrySigner) -> None:
    signed = registry_signer.image("badge/etag")
    registry_signer.sign(signed)
    first = get(service, signed.reference)
    etag = first.headers["etag"]
    again = get(service, signed.reference, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]
    # Another badge has another tag; a stale tag gets the whole badge.
    unsigned = registry_signer.image("badge/etag-unsigned").reference
    other = get(service, unsigned)
    assert other.headers["etag"] != etag
    stale = get(service, unsigned, headers={"If-None-Match": etag})
    assert stale.status_code == 200 and stale.content == other.content


# -- requests that are not badges -------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "shown", "field"),
    [
        ({"policy": "release"}, "sigstore: invalid image", "image"),
        ({"image": "ghcr.io/a/b:v1"}, "sigstore: invalid policy", "policy"),
        ({"image": "ghcr.io/a/b:v1", "policy": "release", "format": "png"},
         "sigstore: invalid format", "format"),
        ({"image": "", "policy": "Release!"}, "sigstore: invalid request", "policy"),
    ],
)  # fmt: skip
def test_a_malformed_badge_url_is_a_400_badge(
    service: CheckedClient, params: dict[str, str], shown: str, field: str
) -> None:
    response = service.get("/v1/badge", params=params)
    assert response.status_code == 400
    assert said(response)[0] == shown
    assert response.headers["cache-control"] == "no-store"
    if field != "format":  # asked for as JSON, the same URL is a problem naming the field
        as_json = service.get("/v1/badge", params={**params, "format": "json"})
        assert as_json.status_code == 400
        assert field in as_json.json()["errors"]


def test_badges_switched_off_still_render(
    start_service: ServiceFactory, sigstore_local: LocalSigstore, tmp_path: Path
) -> None:
    with start_service(rekor_url=sigstore_local.url, badges="false") as (_, client):
        response = client.get("/v1/badge", params={"image": "ghcr.io/a/b:v1", "policy": "x"})
        assert response.status_code == 200
        assert said(response)[:2] == ("sigstore: disabled", "disabled")
        shields = client.get(
            "/v1/badge", params={"image": "ghcr.io/a/b:v1", "policy": "x", "format": "json"}
        ).json()
        assert (shields["message"], shields["isError"]) == ("disabled", True)
