"""`GET /docs`: the OpenAPI contract rendered for people, server-side, with no CDN and no script.

Everything on the page comes from `openapi.yaml` and two files served by the service itself.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

import yaml
from flask import Blueprint, Response, render_template_string

bp = Blueprint("docs", __name__)

DOCS_CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'"
_METHODS = ("get", "put", "post", "delete", "patch")


def _data(name: str) -> bytes:
    return (importlib.resources.files("service") / "data" / name).read_bytes()


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return str(schema.get("type", "object"))


@functools.cache
def _page() -> str:
    """The rendered page; the spec is part of the package, so it is rendered once."""
    spec = yaml.safe_load(_data("openapi.yaml"))
    operations: list[dict[str, Any]] = []
    for path, item in spec["paths"].items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            examples = [
                (name, json.dumps(example.get("value"), indent=2))
                for name, example in body.get("examples", {}).items()
            ]
            if "example" in body:
                examples.append(("request", json.dumps(body["example"], indent=2)))
            responses = []
            for status, given in op["responses"].items():
                response = given
                if "$ref" in given:
                    response = spec["components"]["responses"][given["$ref"].rsplit("/", 1)[-1]]
                content = ", ".join(
                    f"{media} {_schema_name(media_type.get('schema'))}".strip()
                    for media, media_type in response.get("content", {}).items()
                )
                responses.append(
                    {"status": status, "content": content, "description": response["description"]}
                )
            operations.append(
                {
                    "id": op["operationId"],
                    "method": method,
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tags": op.get("tags", []),
                    "public": op.get("security") == [{}],
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "schema": json.dumps(p.get("schema", {})),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _schema_name(body.get("schema")),
                    "examples": examples,
                    "responses": responses,
                }
            )
    schemas = [
        (name, yaml.safe_dump(schema, sort_keys=False, width=96))
        for name, schema in spec["components"]["schemas"].items()
    ]
    template = _data("docs.html").decode()
    return render_template_string(
        template,
        info=spec["info"],
        openapi=spec["openapi"],
        operations=operations,
        schemas=schemas,
    )


@bp.get("/docs")
def docs() -> Response:
    response = Response(_page(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs/style.css")
def style() -> Response:
    response = Response(_data("docs.css"), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
