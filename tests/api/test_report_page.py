"""`GET /reports/{policy}` in process: who may see it (header, cookie, sign-in form), what the
form refuses (another site's post), the cookie's attributes, the page's CSP, escaping, and
authentication off. The browser's view of it is tests/e2e/test_report_page.py."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from service.api.auth import REPORT_COOKIE
from service.app import create_app
from service.config import Settings
from service.reports import Outcome, Sighting
from service.reports.fixes import BY_NAME
from service.state import Services
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient

POLICIES = b"""
policies:
  - name: watch
    tenant: platform
    mode: audit
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
  - name: theirs
    tenant: other
    mode: audit
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
"""
TOKEN = "token-for-platform-0123456789"
OTHER = "token-for-other-tenant-012345"
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def make_app(tmp_path: Path, *, tokens: bool = True) -> Flask:
    path = tmp_path / "policies.yaml"
    path.write_bytes(POLICIES)
    pairs = (("platform", TOKEN), ("other", OTHER)) if tokens else ()
    return create_app(
        Settings(data_dir=tmp_path / "data", rekor_url=NO_REKOR, policy_file=path, api_tokens=pairs)
    )


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


def client_for(app: Flask, base: str = "http://sigverify") -> CheckedClient:
    return CheckedClient(transport=httpx.WSGITransport(app=app), base_url=base)


@pytest.fixture
def client(app: Flask) -> Iterator[CheckedClient]:
    with client_for(app) as c:
        yield c


def sign_in(client: httpx.Client, token: str = TOKEN, **headers: str) -> httpx.Response:
    return client.post(
        "/reports/watch",
        data={"action": "sign-in", "token": token},
        headers=headers or SAME_SITE,
    )


def test_without_a_token_the_page_is_a_sign_in_form_whatever_the_policy(
    client: CheckedClient,
) -> None:
    watch = client.get("/reports/watch")
    nothing = client.get("/reports/no-such-policy")
    assert watch.status_code == nothing.status_code == 401
    assert watch.headers["content-type"].startswith("text/html")
    assert watch.text == nothing.text.replace("no-such-policy", "watch")
    form = re.search(r'<form class="sign-in" method="post" action="([^"]+)">', watch.text)
    assert form is not None and form.group(1) == "/reports/watch"
    assert 'type="password"' in watch.text and TOKEN not in watch.text


def test_a_bearer_token_shows_the_report_of_its_tenant_only(client: CheckedClient) -> None:
    page = client.get("/reports/watch", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200 and "Report of policy watch" in page.text
    assert "Not ready to enforce: no image was seen" in page.text
    theirs = client.get("/reports/theirs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert theirs.status_code == 404 and "no policy named" in theirs.text
    wrong = client.get("/reports/watch", headers={"Authorization": "Bearer not-a-token-at-all"})
    assert wrong.status_code == 401


def test_signing_in_sets_a_strict_cookie_for_the_pages_only(client: CheckedClient) -> None:
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/reports/watch"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{REPORT_COOKIE}={TOKEN};")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/reports/" in cookie
    assert "secure" not in attributes  # plain HTTP here; see the HTTPS test
    page = client.get("/reports/watch")  # the client keeps the cookie
    assert page.status_code == 200 and "Sign out" in page.text
    # The API never reads the cookie.
    assert client.get("/v1/reports/watch").status_code == 401
    assert client.get("/v1/policies").status_code == 401
    out = client.post("/reports/watch", data={"action": "sign-out"}, headers=SAME_SITE)
    assert out.status_code == 303
    cleared = out.headers["set-cookie"]
    assert cleared.startswith(f"{REPORT_COOKIE}=; ") and "Max-Age=0" in cleared
    assert client.get("/reports/watch").status_code == 401


def test_the_cookie_is_secure_over_https(app: Flask) -> None:
    with client_for(app, "https://sigverify") as client:
        assert "; Secure" in sign_in(client).headers["set-cookie"]


def test_a_wrong_token_is_refused_with_the_form_again(client: CheckedClient) -> None:
    answer = sign_in(client, "not-the-right-token-000000")
    assert answer.status_code == 401 and "That token was not accepted." in answer.text
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {},
    ],
)
def test_a_form_from_another_site_is_refused(
    client: CheckedClient, headers: dict[str, str]
) -> None:
    """Login CSRF: another site must not sign a browser in (to its own tenant) or out."""
    answer = client.post(
        "/reports/watch", data={"action": "sign-in", "token": TOKEN}, headers=headers
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert "only be sent from the report page itself" in answer.text


def test_an_origin_of_this_service_is_accepted_without_fetch_metadata(
    client: CheckedClient,
) -> None:
    assert sign_in(client, Origin="http://sigverify").status_code == 303


def test_the_csp_allows_exactly_the_inline_style_and_no_script(client: CheckedClient) -> None:
    page = client.get("/reports/watch", headers={"Authorization": f"Bearer {TOKEN}"})
    csp = page.headers["content-security-policy"]
    style = re.search(r"<style>(.*?)</style>", page.text, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in page.text
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"


def test_what_callers_and_signers_wrote_is_escaped(app: Flask, client: CheckedClient) -> None:
    services: Services = app.extensions["sigverify"]
    outcome = Outcome(
        "failed", "sha256:" + "a" * 64, "identity", (f"signed by {HOSTILE}, expected a@b.c",),
        BY_NAME["wrong-identity"], None,
    )  # fmt: skip
    services.reports.record("platform", "watch", [
        Sighting.of(at=services.reports.now(), reference=f"registry.test/app:{HOSTILE}",
                    source="admission", mode="audit", outcome=outcome,
                    namespace=HOSTILE, workload=f"Deployment/{HOSTILE}")])  # fmt: skip
    page = client.get("/reports/watch", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert page.text.count("&lt;img src=x onerror=alert(1)&gt;") >= 4  # ref, ns, workload, reason


def test_with_authentication_off_the_page_says_so(tmp_path: Path) -> None:
    with client_for(make_app(tmp_path, tokens=False)) as client:
        page = client.get("/reports/theirs")
        assert page.status_code == 200
        assert "Authentication is off on this service" in page.text
        assert "Sign out" not in page.text and 'type="password"' not in page.text
        signed = client.post("/reports/watch", data={"action": "sign-in"}, headers=SAME_SITE)
        assert signed.status_code == 303
