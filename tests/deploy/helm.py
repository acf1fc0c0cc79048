"""Running the pinned helm binary (offline) and reading what it renders.

`scripts/helm.sh` puts helm at .venv/tools/helm; a test that needs it fails, with the command to
run, when it is missing. helm gets private cache, config and data directories and no kubeconfig:
`helm lint` and `helm template` never contact a cluster or a repository, except the Kubernetes API
double of `tests.deploy.kube_api` on loopback when a test names its kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sigverify"
HELM = ROOT / ".venv" / "tools" / "helm"
KUBE_VERSION = "1.33.0"
RELEASE = "sigverify"
NAMESPACE = "verify"

# helm's own home (caches, plugins, repositories): private to the tests, and left empty.
_HOME = ROOT / ".venv" / "tools" / "helm-home"


def run(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm with `args` (against the cluster `kubeconfig` names, if any); fails the test
    when the binary is missing."""
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run scripts/helm.sh (scripts/test.sh does it)")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(_HOME),
        "HELM_CACHE_HOME": str(_HOME / "cache"),
        "HELM_CONFIG_HOME": str(_HOME / "config"),
        "HELM_DATA_HOME": str(_HOME / "data"),
        "KUBECONFIG": str(kubeconfig) if kubeconfig is not None else os.devnull,
    }
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys, as the API server's strict decoding does."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key_node) for key_node, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {sorted(map(str, duplicates))}", node.start_mark
        )
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Rendered:
    """The manifests `helm template` produced for one set of values."""

    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    @property
    def server(self) -> dict[str, Any]:
        """The sigverify Deployment (not the in-chart Redis)."""
        return self.get("Deployment", RELEASE)

    @property
    def container(self) -> dict[str, Any]:
        containers = self.server["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "sigverify")


def template_args(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def template(
    values: Sequence[Path] = (), sets: Sequence[str] = (), *, kubeconfig: Path | None = None
) -> Rendered:
    """Render the chart; fails the test with helm's message when rendering fails. With
    `kubeconfig`, helm renders against that cluster (`--dry-run=server`: `lookup` asks it)."""
    args = template_args(values, sets)
    if kubeconfig is not None:
        args += ["--dry-run=server", "--disable-openapi-validation"]
    result = run(*args, kubeconfig=kubeconfig)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.load_all(result.stdout, Loader=_UniqueKeyLoader) if d]
    return Rendered(docs)


def template_error(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> str:
    """Render the chart expecting a failure; returns helm's message."""
    result = run(*template_args(values, sets))
    assert result.returncode != 0, "helm template succeeded"
    return result.stderr
