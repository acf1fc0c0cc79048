"""The report page as a person sees it: Debian's chromium (driven by Playwright) against the
service under gunicorn, with Redis, the real registry and the local Sigstore instance.

A tenant signs in through the form (the token never in a URL), reads the report of an audit
policy with passing, failing and could-not-verify images, and of an enforcing one, and of one
that is ready to enforce; screenshots of each are saved in the test's tmp dir and checked for
the words a person needs. What callers and signers wrote shows as text, never as markup; the
page runs no script and breaks no rule of its CSP; another site's form cannot sign in.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, sync_playwright

from service.api.auth import REPORT_COOKIE
from tests.e2e.conftest import ServiceFactory
from tests.e2e.reporting import (
    OTHER_TOKEN,
    PLATFORM,
    PLATFORM_TOKEN,
    TOKENS,
    Images,
    make_images,
    policy_file,
    review,
)
from tests.servers import RedisServer, RegistryServer, free_port
from tests.sigstore_local.fixtures import LocalSigstore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TIMEOUT_MS = 30_000
HOSTILE = 'web-<img src=x onerror="alert(1)">'


@dataclass(frozen=True)
class Site:
    url: str
    images: Images
    gone: str  # an image whose registry is down


@pytest.fixture(scope="module")
def site(
    start_service: ServiceFactory,
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    redis_server: RedisServer,
) -> Iterator[Site]:
    dead = f"127.0.0.1:{free_port()}"
    with (
        sigstore_local.registry_signer(registry.url) as signer,
        start_service(
            rekor_url=sigstore_local.url,
            trust_root_file=str(sigstore_local.trusted_root_path),
            policy_file=str(policy_file(tmp_path_factory.mktemp("report-page"))),
            api_tokens=TOKENS,
            redis_url=redis_server.url,
            insecure_registries=f"{registry.host},{dead}",
            registry_timeout="2",
        ) as (server, client),
    ):
        images = make_images(signer, "page")
        gone = f"{dead}/page/cache:v3"
        # Audit (`watch`): a pod in `shop` with a passing, a wrong-issuer and an unreachable
        # image, its controller's name full of markup; CI checks two more by batch.
        pod = review("shop", [images.signed.tag_reference, images.wrong_issuer.tag_reference,
                              gone], owner=HOSTILE)  # fmt: skip
        assert client.post("/v1/admission", json=pod).status_code == 200
        batch = {
            "policyName": "watch",
            "images": [
                {"image": images.wrong_identity.tag_reference},
                {"image": images.unsigned.tag_reference},
            ],
        }
        assert client.post("/v1/verify/batch", json=batch, headers=PLATFORM).status_code == 200
        # Enforce (`gate`): one denied, one admitted.
        pay = review("payments", [images.signed.tag_reference, images.unsigned.tag_reference])
        assert client.post("/v1/admission", json=pay).json()["response"]["allowed"] is False
        # Ready (`rollout`): everything passes.
        ready = review("staging", [images.signed.tag_reference])
        assert client.post("/v1/admission", json=ready).json()["response"]["allowed"] is True
        yield Site(server.url, images, gone)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Visit:
    context: BrowserContext
    page: Page
    problems: list[str]  # console errors (CSP violations among them), page errors, dialogs


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if _problem(m.type, m.text) else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def dialog(d: Dialog) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    yield Visit(context, page, problems)
    context.close()


def _problem(kind: str, text: str) -> bool:
    """A console error, but for Chromium's note on the sign-in form's own 401 (expected)."""
    return kind == "error" and "status of 401" not in text


def sign_in(visit: Visit, url: str, token: str = PLATFORM_TOKEN) -> None:
    page = visit.page
    response = page.goto(url)
    assert response is not None and response.status == 401
    assert page.locator("h1").inner_text() == "Sign in to see this report"
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == url  # no token in the URL, before or after


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def shot(page: Page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    width, height = png_size(path)
    assert width == 1280 and height >= 900
    return path


def test_a_tenant_signs_in_and_reads_what_would_be_denied(
    site: Site, visit: Visit, tmp_path: Path
) -> None:
    page, images = visit.page, site.images
    url = f"{site.url}/reports/watch"
    page.goto(url)
    shot(page, tmp_path / "sign-in.png")
    sign_in(visit, url)
    (cookie,) = [c for c in visit.context.cookies() if c["name"] == REPORT_COOKIE]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/reports/" and cookie["secure"] is False  # plain HTTP here
    assert page.evaluate("document.cookie") == ""  # out of reach of any script
    shot(page, tmp_path / "report-watch.png")

    assert page.locator("h1").inner_text() == "Report of policy watch"
    ready = page.locator("#ready")
    assert ready.inner_text() == (
        "Not ready to enforce: 4 of 5 image(s) seen in the last 7 days would be denied."
    )
    assert "no" in (ready.get_attribute("class") or "")
    assert "Ready to enforce means:" in page.locator(".rule").inner_text()
    fixes = page.locator("#fixes li").all_inner_texts()
    assert [f.split(" (")[0] for f in fixes] == [
        "Not signed", "Signed by another identity", "Signed through another OIDC issuer",
        "Could not be verified when seen"]  # fmt: skip
    assert all("1 image)" in f for f in fixes)

    # The would-be-denied images come first, each with what to fix.
    assert page.locator("#denied h2").inner_text() == "Would be denied under enforce (4)"
    cards = page.locator("#denied article")
    assert cards.count() == 4
    texts = {cards.nth(i).locator("h3").inner_text(): cards.nth(i).inner_text()
             for i in range(4)}  # fmt: skip
    issuer = texts[images.wrong_issuer.tag_reference]
    assert "Failed: Signed through another OIDC issuer" in issuer
    assert "What to fix: Sign from the CI system whose OIDC issuer the policy names" in issuer
    assert images.wrong_issuer.digest in issuer and "Failing check\nidentity" in issuer
    assert "oidc issuer https://accounts.google.com, expected" in issuer
    assert "Namespaces\nshop" in issuer
    assert f"Workloads\nReplicaSet/{HOSTILE}" in issuer  # the markup, as text
    identity = texts[images.wrong_identity.tag_reference]
    assert "refs/heads/dev" in identity and "through batch" in identity
    assert "Failed: Not signed" in texts[images.unsigned.tag_reference]
    down = texts[site.gone]
    assert "Could not be verified: its registry could not be reached" in down
    assert "What to fix: sigverify could not reach" in down and "Digest\nnot resolved" in down

    passing = page.locator("#passing")
    assert passing.locator("h2").inner_text() == "Passing (1)"
    (row,) = passing.locator("tbody tr").all_inner_texts()
    assert images.signed.tag_reference in row and images.signed.digest in row
    # Denied before passing on the page.
    assert page.evaluate(
        "() => document.querySelector('#denied').compareDocumentPosition("
        "document.querySelector('#passing')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    # What the caller wrote did not become markup, nor ran.
    assert page.evaluate("() => document.querySelectorAll('img, script').length") == 0
    assert visit.problems == []


def test_an_enforcing_policy_shows_its_denials(site: Site, visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    sign_in(visit, f"{site.url}/reports/gate")
    shot(page, tmp_path / "report-gate.png")
    assert page.locator("#ready").inner_text() == (
        "Enforcing: 1 of 2 image(s) seen in the last 7 days were denied."
    )
    assert page.locator("#denied h2").inner_text() == "Denied (1)"
    assert site.images.unsigned.tag_reference in page.locator("#denied article h3").inner_text()
    assert "mode enforce" in page.locator(".meta").inner_text()
    assert visit.problems == []


def test_a_policy_ready_to_enforce(site: Site, visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    sign_in(visit, f"{site.url}/reports/rollout")
    shot(page, tmp_path / "report-ready.png")
    ready = page.locator("#ready")
    assert ready.inner_text() == (
        "Ready to enforce: none of the 1 image(s) seen in the last 7 days would be denied."
    )
    assert "yes" in (ready.get_attribute("class") or "")
    assert page.locator("#fixes").count() == 0
    assert page.locator("#denied").inner_text().endswith("None.")
    # Signing out ends it.
    with page.expect_navigation():
        page.click("text=Sign out")
    assert page.locator("h1").inner_text() == "Sign in to see this report"
    assert [c for c in visit.context.cookies() if c["name"] == REPORT_COOKIE] == []
    assert visit.problems == []


class Elsewhere:
    """Another origin (another port on loopback) with a form that posts a token to the
    report page, as a site trying to sign a visitor in to its own tenant would."""

    def __init__(self, target: str, token: str) -> None:
        form = (
            f'<!doctype html><form method="post" action="{target}">'
            '<input type="hidden" name="action" value="sign-in">'
            f'<input type="hidden" name="token" value="{token}">'
            '<button id="go" type="submit">go</button></form>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(form)))
                self.end_headers()
                self.wfile.write(form)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def test_another_site_cannot_sign_a_visitor_in(site: Site, visit: Visit) -> None:
    # The service is on 127.0.0.1 too: name it `localhost` to make the other port another site.
    target = f"{site.url.replace('127.0.0.1', 'localhost')}/reports/watch"
    elsewhere = Elsewhere(target, OTHER_TOKEN)
    try:
        page = visit.page
        page.goto(elsewhere.url)
        with page.expect_navigation():
            page.click("#go")
        assert page.locator("main").inner_text() == (
            "This form can only be sent from the report page itself."
        )
        assert [c for c in visit.context.cookies() if c["name"] == REPORT_COOKIE] == []
    finally:
        elsewhere.close()
