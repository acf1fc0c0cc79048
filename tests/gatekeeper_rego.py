"""The README's Gatekeeper and Kyverno snippets, and the Rego of its ConstraintTemplate run by a
real Rego engine (rego-cpp, through `regopy`) as Gatekeeper would run it.

Gatekeeper's `external_data` builtin is Go code inside Gatekeeper; what it hands to Rego is
built from the provider's ProviderResponse by `NewRegoResponse` in open-policy-agent/frameworks
(`constraint/pkg/externaldata`): `responses` = [[key, value]] for items without an error,
`errors` = [[key, error]], `status_code` (the HTTP status; 0 when every key came from
Gatekeeper's own cache and no request was sent), `system_error`. `rego_answer` does the same
here, and a Rego function named `external_data` in the template's package returns it, so the
template runs unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import regopy
import yaml

README = Path(__file__).parent.parent / "README.md"
MARKER = re.compile(r"^# (gatekeeper|kyverno): (\w+)$", re.MULTILINE)


def snippets() -> dict[str, dict[str, Any]]:
    """Every YAML document of the README marked `# gatekeeper: Kind` or `# kyverno: Kind`, by
    that marker (`gatekeeper: Provider`)."""
    found: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL):
        for document in block.split("\n---\n"):
            marker = MARKER.search(document)
            if marker is None:
                continue
            loaded = yaml.safe_load(document)
            assert isinstance(loaded, dict), marker.group(0)
            found[f"{marker.group(1)}: {marker.group(2)}"] = loaded
    return found


def template_rego() -> str:
    """The Rego of the README's ConstraintTemplate."""
    template = snippets()["gatekeeper: ConstraintTemplate"]
    (target,) = template["spec"]["targets"]
    rego = target["rego"]
    assert isinstance(rego, str)
    return rego


def rego_answer(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """What Gatekeeper's `external_data` returns to Rego for a provider's answer (see module)."""
    response = body.get("response") or {}
    responses: list[list[Any]] = []
    errors: list[list[Any]] = []
    for item in response.get("items") or []:
        if item.get("error"):
            errors.append([item.get("key"), item["error"]])
        else:
            responses.append([item.get("key"), item.get("value")])
    return {
        "responses": responses,
        "errors": errors,
        "status_code": status,
        "system_error": response.get("systemError", ""),
    }


def violations(answer: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> list[str]:
    """The messages of the template's `violation` set for a Pod with `pod_spec`, when its
    `external_data` call returns `answer` (`rego_answer`'s shape)."""
    package = re.search(r"^package (\S+)$", template_rego(), re.MULTILINE)
    assert package is not None
    interpreter = regopy.Interpreter()
    interpreter.add_module("template.rego", template_rego())
    # Gatekeeper's builtin, as a function of the same package.
    stand_in = f"package {package.group(1)}\n\nexternal_data(request) := data.stand_in.answer\n"
    interpreter.add_module("stand_in.rego", stand_in)
    interpreter.add_data_json(json.dumps({"stand_in": {"answer": answer}}))
    review = {"review": {"kind": {"kind": "Pod"}, "object": {"spec": pod_spec}}}
    interpreter.set_input_term(json.dumps(review))
    output = interpreter.query(
        f"msgs := sort([v.msg | some v in data.{package.group(1)}.violation])"
    )
    assert output.ok(), output
    found = json.loads(output.binding("msgs").json())
    assert isinstance(found, list)
    return [str(m) for m in found]


def asked_keys(pod_spec: Mapping[str, Any]) -> list[str]:
    """The keys the template sends to the provider for a Pod with `pod_spec`."""
    package = re.search(r"^package (\S+)$", template_rego(), re.MULTILINE)
    assert package is not None
    interpreter = regopy.Interpreter()
    interpreter.add_module("template.rego", template_rego())
    interpreter.add_module(
        "stand_in.rego",
        f'package {package.group(1)}\n\nexternal_data(request) := {{"keys": request.keys}}\n',
    )
    interpreter.set_input_term(json.dumps({"review": {"object": {"spec": pod_spec}}}))
    output = interpreter.query(f"keys := sort(data.{package.group(1)}.answer.keys)")
    assert output.ok(), output
    keys = json.loads(output.binding("keys").json())
    assert isinstance(keys, list)
    return [str(k) for k in keys]


def pod(containers: Sequence[str], init: Sequence[str] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": x} for i, x in enumerate(containers)]
    }
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": x} for i, x in enumerate(init)]
    return spec
