"""The GitHub Action (`action.yml`), its steps run here as the runner runs a composite action,
against the service under gunicorn.

`GitHubRunner` reads action.yml and does what the runner does with a composite action's steps:
inputs with their defaults, `${{ inputs.x }}`, `${{ github.action_path }}` and
`${{ steps.id.outputs.x }}` substituted, each `run:` written to a file and run with
`bash --noprofile --norc -eo pipefail`, `$GITHUB_OUTPUT`, `$GITHUB_PATH` and
`$GITHUB_STEP_SUMMARY` files, and the action's outputs. Any other expression fails the test.
As on GitHub, a composite action's inputs are *not* set as `INPUT_*` variables by the runner:
the action must map them in `env:` itself, and a missing mapping fails here too.

The install step runs for real once per module (a virtualenv in `$RUNNER_TEMP`, the hashed lock
file from PyPI, then this checkout); later runs reuse it, as a second use in one job does.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ServiceFactory
from tests.servers import ServiceServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

ROOT = Path(__file__).parents[2]
ACTION = ROOT / "action.yml"
IDENTITY = artifacts.DEFAULT_IDENTITY
TOKEN = "action-token-0123456789abcdef"
INSTALL_TIMEOUT = 900  # the first run installs the CLI from PyPI
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class ActionRun:
    """What one use of the action left: exit status, log, step summary and outputs."""

    code: int
    log: str
    summary: str
    outputs: dict[str, str]
    steps_run: int


@dataclass
class GitHubRunner:
    """Runs action.yml's composite steps in `workdir` as GitHub's runner does."""

    workdir: Path
    env: dict[str, str]
    runner_temp: Path
    path_entries: list[str] = field(default_factory=list)
    uses: int = 0

    def run(self, inputs: Mapping[str, str], timeout: float = 300) -> ActionRun:
        action = yaml.safe_load(ACTION.read_text())
        assert action["runs"]["using"] == "composite"
        declared: dict[str, Any] = action["inputs"]
        assert not set(inputs) - set(declared), f"undeclared inputs {set(inputs) - set(declared)}"
        for name, spec in declared.items():
            assert not spec.get("required") or name in inputs, f"required input {name} missing"
        values = {n: inputs.get(n, str(s.get("default", ""))) for n, s in declared.items()}
        self.uses += 1
        use = self.workdir / f"use-{self.uses}"
        use.mkdir()
        summary = use / "step-summary.md"
        summary.touch()
        steps: dict[str, dict[str, str]] = {}
        log: list[str] = []
        code, ran = 0, 0
        for n, step in enumerate(action["runs"]["steps"]):
            assert step.get("shell") == "bash" and "uses" not in step and "if" not in step, step
            output = use / f"output-{n}"
            output.touch()
            github_path = use / f"path-{n}"
            github_path.touch()

            def render(text: str) -> str:
                return _EXPRESSION.sub(lambda m: _evaluate(m.group(1), values, steps), text)

            script = use / f"step-{n}.sh"
            script.write_text(render(step["run"]))
            env = {
                **self.env,
                "PATH": os.pathsep.join([*self.path_entries, self.env["PATH"]]),
                "GITHUB_ACTIONS": "true",
                "GITHUB_ACTION_PATH": str(ROOT),
                "GITHUB_OUTPUT": str(output),
                "GITHUB_PATH": str(github_path),
                "GITHUB_STEP_SUMMARY": str(summary),
                "RUNNER_TEMP": str(self.runner_temp),
                **{k: render(str(v)) for k, v in step.get("env", {}).items()},
            }
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                env=env,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT if n == 0 else timeout,
                check=False,
            )
            ran += 1
            log += [result.stdout, result.stderr]
            self.path_entries[:0] = reversed(github_path.read_text().splitlines())
            if "id" in step:
                steps[step["id"]] = _outputs(output.read_text())
            if result.returncode != 0:
                code = result.returncode
                break  # a failed step ends the action
        outputs = {
            name: _EXPRESSION.sub(lambda m: _evaluate(m.group(1), values, steps), spec["value"])
            for name, spec in action.get("outputs", {}).items()
        }
        return ActionRun(code, "".join(log), summary.read_text(), outputs, ran)


def _evaluate(expression: str, inputs: Mapping[str, str], steps: Mapping[str, Any]) -> str:
    """The expressions a composite action's steps may use here; anything else fails."""
    if match := re.fullmatch(r"inputs\.([A-Za-z0-9_-]+)", expression):
        assert match.group(1) in inputs, f"${{{{ {expression} }}}}: no such input"
        return inputs[match.group(1)]
    if expression == "github.action_path":
        return str(ROOT)
    if match := re.fullmatch(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expression):
        return str(steps.get(match.group(1), {}).get(match.group(2), ""))
    raise AssertionError(f"unsupported expression ${{{{ {expression} }}}}")


def _outputs(text: str) -> dict[str, str]:
    """`$GITHUB_OUTPUT`'s lines: `name=value`, or `name<<DELIMITER` ... `DELIMITER`."""
    found: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            found[name] = "\n".join(iter(lines.__next__, delimiter))
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, sigstore_local: LocalSigstore
) -> Iterator[ServiceServer]:
    with start_service(
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        api_tokens=f"ci={TOKEN}",
    ) as (server, _):
        yield server


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> GitHubRunner:
    """One job's runner: its `$RUNNER_TEMP` (and so the installed CLI) lasts the module."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGVERIFY_", "GITHUB_"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )  # the CLI must come from the action's own install, not the test's virtualenv
    return GitHubRunner(
        tmp_path_factory.mktemp("workspace"), env, tmp_path_factory.mktemp("runner-temp")
    )


TRUST = {"certificate-identity": IDENTITY, "certificate-oidc-issuer": ACTIONS}


def test_the_action_verifies_a_release_and_writes_the_job_summary(
    runner: GitHubRunner, service: ServiceServer, registry_signer: RegistrySigner
) -> None:
    app = registry_signer.image("action/app")
    worker = registry_signer.image("action/worker")
    registry_signer.sign(app)
    registry_signer.sign(worker)
    run = runner.run(
        {
            "images": f"{app.reference}\n{worker.tag_reference}\n",
            "server": service.url,
            "token": TOKEN,
            **TRUST,
        }
    )
    assert run.code == 0, run.log
    assert run.outputs == {"passed": "true", "exit-code": "0"}
    assert (runner.runner_temp / "sigverify-action" / "bin" / "sigverify").is_file()
    assert f"{app.reference}: verified" in run.log
    assert f"{worker.tag_reference}: verified" in run.log
    assert "2 of 2 images verified" in run.summary
    assert f"| ` {app.reference} ` | ` {app.digest} ` | ✅ verified |" in run.summary
    # The token reaches the CLI and is masked; it is printed nowhere else.
    assert run.log.count(TOKEN) == 1 and f"::add-mask::{TOKEN}" in run.log


def test_the_action_fails_the_step_for_an_unsigned_image(
    runner: GitHubRunner, service: ServiceServer, registry_signer: RegistrySigner
) -> None:
    signed = registry_signer.image("action/signed")
    registry_signer.sign(signed)
    unsigned = registry_signer.image("action/unsigned")
    run = runner.run(
        {
            "images": f"{signed.reference} {unsigned.reference}",
            "server": service.url,
            "token": TOKEN,
            "output": "json",
            **TRUST,
        }
    )
    assert run.code == 1
    assert run.outputs == {"passed": "false", "exit-code": "1"}
    assert '"verified": false' in run.log
    assert "1 of 2 images verified: 1 not verified" in run.summary
    assert "❌ not verified" in run.summary


def test_the_action_takes_the_environments_server_and_token(
    runner: GitHubRunner, service: ServiceServer, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("action/from-env")
    registry_signer.sign(image)
    runner.env.update({"SIGVERIFY_SERVER": service.url, "SIGVERIFY_TOKEN": TOKEN})
    try:
        run = runner.run({"images": image.reference, **TRUST})
        assert run.code == 0, run.log
        runner.env["SIGVERIFY_TOKEN"] = "not-the-token-0123456789"
        refused = runner.run({"images": image.reference, **TRUST})
    finally:
        del runner.env["SIGVERIFY_SERVER"], runner.env["SIGVERIFY_TOKEN"]
    assert refused.code == 2 and "401" in refused.log
    assert refused.summary.startswith("### sigverify: could not verify")


@pytest.mark.parametrize(
    ("inputs", "said"),
    [
        ({"images": "  \n "}, "images: give at least one image reference"),
        ({"images": "x/y:z", "local": "yes"}, "local: expected true or false"),
        ({"images": "x/y:z"}, "say whom to trust"),
        # An input is a value, never code or a flag: these are refused as what they are.
        ({"images": "x/y:z", "certificate-identity": "$(touch pwned)"}, "goes with"),
        ({"images": "--local x/y:z", **TRUST}, "IMAGE"),
    ],
)
def test_the_action_refuses_bad_inputs_with_exit_2(
    runner: GitHubRunner, service: ServiceServer, inputs: dict[str, str], said: str
) -> None:
    run = runner.run({"server": service.url, "token": TOKEN, **inputs})
    assert run.code == 2, run.log
    assert said in run.log
    assert not (runner.workdir / "pwned").exists()


def test_the_action_verifies_locally(
    runner: GitHubRunner, sigstore_local: LocalSigstore, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("action/local")
    registry_signer.sign(image)
    runner.env.update(
        {
            "SIGVERIFY_INSECURE_REGISTRIES": registry_signer.registry,
            "SIGVERIFY_ALLOW_LOOPBACK": "true",
            "SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1,localhost",
        }
    )
    try:
        run = runner.run(
            {
                "images": image.reference,
                "local": "true",
                "trusted-root": str(sigstore_local.trusted_root_path),
                "rekor-url": sigstore_local.url,
                **TRUST,
            }
        )
    finally:
        for name in ("INSECURE_REGISTRIES", "ALLOW_LOOPBACK", "REGISTRY_ALLOW"):
            del runner.env[f"SIGVERIFY_{name}"]
    assert run.code == 0, run.log
    assert "✅ verified" in run.summary
