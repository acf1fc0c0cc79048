"""`GET /docs`: the OpenAPI contract in Swagger UI, with "try it out", served whole by the service.

Swagger UI's own build (its `dist/` files, as the flask-swagger-ui package ships them) and our
two static files, the page and the script that starts Swagger UI on `/openapi.yaml`, all come
from this service: no CDN, so the page works in an air-gapped cluster, and no inline script, so
its Content-Security-Policy allows scripts, styles and requests from this origin only.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
from dataclasses import dataclass

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

bp = Blueprint("docs", __name__)

# Swagger UI draws its icons from data: URIs; "try it out" fetches from this origin only. The
# validator badge, which would load an image from a public site, is switched off in docs.js.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_AGE = 3600


@dataclass(frozen=True)
class Asset:
    """A file the docs page loads: where it lives, and its media type."""

    package: str
    path: str
    media_type: str


_SWAGGER_UI = "flask_swagger_ui"
# What GET /docs/{asset} serves; openapi.yaml lists the same names.
ASSETS = {
    "swagger-ui.css": Asset(_SWAGGER_UI, "dist/swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": Asset(_SWAGGER_UI, "dist/swagger-ui-bundle.js", "text/javascript"),
    "favicon-32x32.png": Asset(_SWAGGER_UI, "dist/favicon-32x32.png", "image/png"),
    "docs.js": Asset("service", "data/docs.js", "text/javascript"),
}


@dataclass(frozen=True)
class _Loaded:
    """A file's bytes, gzipped once for the clients that accept it, and its ETag."""

    data: bytes
    gzipped: bytes
    etag: str


@functools.cache
def _load(package: str, path: str) -> _Loaded:
    data = (importlib.resources.files(package) / path).read_bytes()
    return _Loaded(data, gzip.compress(data, 9, mtime=0), hashlib.sha256(data).hexdigest()[:32])


def _serve(asset: Asset, max_age: int) -> Response:
    loaded = _load(asset.package, asset.path)
    # PNG is compressed already; text shrinks to about a quarter (the bundle: 1.7 MB to 450 KB).
    accepted = request.accept_encodings.quality("gzip") > 0
    compressed = accepted and asset.media_type.startswith("text/")
    response = Response(loaded.gzipped if compressed else loaded.data, mimetype=asset.media_type)
    if compressed:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.set_etag(loaded.etag + ("-gz" if compressed else ""))
    response.make_conditional(request)  # a 304 when If-None-Match names this ETag
    return response


@bp.get("/docs")
def docs() -> Response:
    response = _serve(Asset("service", "data/docs.html", "text/html"), 300)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/docs/<asset>")
def asset(asset: str) -> Response:
    found = ASSETS.get(asset)
    if found is None:
        raise NotFound()
    return _serve(found, MAX_AGE)
