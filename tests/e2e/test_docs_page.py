"""`GET /docs` as a person sees it: Swagger UI in Debian's chromium (driven by playwright),
served by the service under gunicorn.

The page must list every operation of the contract and run "try it out" against this same
service, with every file it loads coming from the service itself and no Content-Security-Policy
violation on the way. Requests to any other origin are aborted and recorded, so a page that
reached for a CDN or the public validator fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, sync_playwright

from tests.contract import spec
from tests.e2e.conftest import ServiceFactory
from tests.servers import ServiceServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def service(start_service: ServiceFactory) -> Iterator[ServiceServer]:
    with start_service() as (server, _):
        yield server


class Visit:
    """A page of the service in a browser, with what it asked for and what went wrong."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requested: list[str] = []
        self.foreign: list[str] = []
        self.problems: list[str] = []
        page.route("**/*", self._route)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)
            route.abort()
            return
        self.requested.append(parts.path)
        route.continue_()

    def _console(self, message: ConsoleMessage) -> None:
        # CSP violations are reported as console errors.
        if message.type == "error":
            self.problems.append(message.text)


@pytest.fixture
def visit(service: ServiceServer) -> Iterator[Visit]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield Visit(page, service.url)
        finally:
            browser.close()


def test_docs_lists_every_operation_and_tries_healthz(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    page.goto(visit.origin + "/docs")
    page.wait_for_selector(".opblock")
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            block = page.locator(f'[id="operations-{op["tags"][0]}-{op["operationId"]}"]')
            assert block.count() == 1, (method, path)
            summary = block.locator(".opblock-summary").inner_text()
            assert method.upper() in summary, (method, path, summary)
            assert op["summary"] in summary, (method, path, summary)
            assert op["operationId"] in summary, (method, path, summary)

    healthz = page.locator("#operations-operations-healthz")
    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    answer = healthz.locator(".live-responses-table")
    answer.wait_for()
    assert answer.locator("tbody .response-col_status").first.inner_text().strip() == "200"
    body = answer.locator("tbody .response-col_description pre").first.inner_text()
    assert '"status": "ok"' in body, body
    # The request went from the page to this same service.
    assert "/healthz" in visit.requested

    shot = tmp_path / "docs.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a rendered page of 14 operations, not a blank one

    assert visit.foreign == []
    assert visit.problems == []
    assert {"/docs", "/openapi.yaml", "/docs/swagger-ui-bundle.js", "/docs/docs.js"} <= set(
        visit.requested
    )
