"""Health, readiness, version, the spec, and problem+json for every error."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import httpx
import pytest
import yaml
from flask import Flask
from openapi_spec_validator import validate

from service.api.docs import ASSETS
from service.app import create_app
from service.config import Settings, SettingsError
from service.keys import DEV_KEY_WARNING
from tests.contract import SPEC_PATH, spec


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_warns_about_the_development_key(client: httpx.Client) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"]["signingKey"]["development"] is True
    assert DEV_KEY_WARNING in body["warnings"]
    assert body["checks"]["cache"] == {"ok": True, "backend": "memory"}
    assert body["checks"]["trustRoot"]["source"] == "embedded"


def test_readyz_reports_unreachable_redis_as_degraded(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, so the cache is down from the start.
    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    body = app.test_client().get("/readyz").get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["cache"] == {"ok": False, "backend": "redis"}


def test_version(client: httpx.Client) -> None:
    body = client.get("/version").json()
    assert body["name"] == "sigverify"
    assert body["sigstore"].startswith("4.5.")


def test_openapi_is_served_and_valid(client: httpx.Client) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert yaml.safe_load(response.content) == spec()
    validate(spec())


def test_routes_equal_the_spec_paths(app: Flask) -> None:
    routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in spec()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert routes == documented


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("POST", "/healthz", 405), ("DELETE", "/readyz", 405)],
)
def test_routing_errors_are_problem_json(app: Flask, method: str, path: str, status: int) -> None:
    response = app.test_client().open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["instance"] == path
    assert path in body["detail"]
    if status == 405:
        assert "GET" in response.headers["Allow"]


def test_unexpected_errors_are_problem_json_without_internals(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail /etc/passwd")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    assert response.get_json()["incident"]


def test_security_headers(client: httpx.Client) -> None:
    headers = client.get("/healthz").headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


def test_bad_trust_root_file_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    root = tmp_path / "trusted_root.json"
    root.write_text('{"mediaType": "not a trusted root"}')
    with pytest.raises(SettingsError, match="trusted root from"):
        create_app(Settings(data_dir=tmp_path, trust_root_file=root))


def test_spec_file_is_the_packaged_one() -> None:
    packaged = Path(__file__).parents[2] / "service" / "data" / "openapi.yaml"
    assert packaged.read_bytes() == SPEC_PATH.read_bytes()


def test_docs_page_loads_only_files_this_service_serves(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # No CDN, no inline script: every script and stylesheet is a relative URL of ours.
    assert "//" not in html.replace("<!DOCTYPE html>", "")
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="docs/' in attributes for attributes in scripts)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp
    assert "unsafe" not in csp
    loaded = re.findall(r'(?:src|href)="(docs/[^"]+)"', html)
    assert len(loaded) == 4, loaded
    for relative in loaded:
        asset = client.get("/" + relative)
        assert asset.status_code == 200, relative
        assert asset.headers["cache-control"].startswith("public")
    swagger_ui = importlib.resources.files("flask_swagger_ui") / "dist"
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert bundle.content == (swagger_ui / "swagger-ui-bundle.js").read_bytes()
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"openapi.yaml" in client.get("/docs/docs.js").content


def test_docs_assets_are_compressed_and_cached_by_etag(client: httpx.Client) -> None:
    plain = client.get("/docs/swagger-ui.css", headers={"accept-encoding": "identity"})
    zipped = client.get("/docs/swagger-ui.css", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < int(plain.headers["content-length"]) / 3
    assert zipped.content == plain.content  # httpx decodes it
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get(
        "/docs/swagger-ui.css",
        headers={"if-none-match": plain.headers["etag"], "accept-encoding": "identity"},
    )
    assert again.status_code == 304
    icon = client.get("/docs/favicon-32x32.png", headers={"accept-encoding": "gzip"})
    assert icon.headers["content-type"] == "image/png"
    assert "content-encoding" not in icon.headers  # PNG is compressed already


@pytest.mark.parametrize("asset", ["nope.js", "docs.html", "swagger-ui.js", "VERSION"])
def test_docs_serve_no_other_file(client: httpx.Client, asset: str) -> None:
    response = client.get(f"/docs/{asset}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_docs_assets_are_the_ones_the_spec_lists() -> None:
    (parameter,) = spec()["paths"]["/docs/{asset}"]["get"]["parameters"]
    assert parameter["schema"]["enum"] == list(ASSETS)
