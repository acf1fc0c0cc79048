"""Keeps openapi.yaml honest: every response a test sees is validated against it."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parent.parent / "openapi.yaml"


@functools.cache
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:sigverify:openapi", resource)
    return registry


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


def operation_for(path: str, method: str) -> dict[str, Any]:
    for template, item in spec()["paths"].items():
        if _template_regex(template).match(path) and method.lower() in item:
            op = item[method.lower()]
            assert isinstance(op, dict)
            return op
    raise AssertionError(f"{method} {path} is not in openapi.yaml")


def _resolve(obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj:
        node: Any = spec()
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check_response(response: httpx.Response) -> None:
    """Fail unless the response's status, media type and body are what the spec documents."""
    request = response.request
    op = operation_for(request.url.path, request.method)
    responses = op["responses"]
    documented = responses.get(str(response.status_code)) or responses.get("default")
    assert documented is not None, f"{response.status_code} undocumented for {request.url.path}"
    documented = _resolve(documented)
    media = response.headers.get("content-type", "").split(";")[0].strip()
    content = documented.get("content", {})
    if not content:  # documented without a body (304)
        assert not response.content, f"{response.status_code} {request.url.path} has a body"
        return
    assert media in content, f"{media} undocumented for {response.status_code} {request.url.path}"
    schema = content[media].get("schema")
    if schema is None or not media.endswith("json"):
        return
    body = json.loads(response.content)
    wrapped = (
        {"$ref": "urn:sigverify:openapi#/" + _pointer_to(schema)}
        if "$ref" not in schema
        else {"$ref": "urn:sigverify:openapi" + schema["$ref"]}
    )
    validator = jsonschema.Draft202012Validator(wrapped, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{request.url.path} {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )


def check_body(body: Any, schema_name: str) -> None:
    """Fail unless `body` is valid under `components.schemas[schema_name]` of the spec."""
    wrapped = {"$ref": f"urn:sigverify:openapi#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(wrapped, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )


def _pointer_to(schema: dict[str, Any]) -> str:
    """A JSON pointer to an inline schema inside the spec (found by identity)."""

    def walk(node: Any, path: list[str]) -> list[str] | None:
        if node is schema:
            return path
        if isinstance(node, dict):
            for key, value in node.items():
                found = walk(value, [*path, str(key).replace("~", "~0").replace("/", "~1")])
                if found is not None:
                    return found
        elif isinstance(node, list):
            for index, value in enumerate(node):
                found = walk(value, [*path, str(index)])
                if found is not None:
                    return found
        return None

    found = walk(spec(), [])
    assert found is not None
    return "/".join(found)


class CheckedClient(httpx.Client):
    """An httpx client that validates every response against openapi.yaml."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = super().send(request, **kwargs)
        response.read()
        check_response(response)
        return response
