"""`sigverify verify` as a CI job runs it: a subprocess, its flags and environment, against the
service under gunicorn (with API tokens and named policies) and, with `--local`, in-process.

Each exit status is reached for real: 0 verified, 1 not verified, 2 could not verify (usage,
network, refused requests). The JSON output is checked against openapi.yaml and the Markdown
step summary is read back from `$GITHUB_STEP_SUMMARY`.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.contract import check_body
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer, ServiceServer, free_port
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.encoding import pem_public
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import Image, RegistrySigner

SIGVERIFY = str(Path(sys.executable).parent / "sigverify")
IDENTITY = artifacts.DEFAULT_IDENTITY
OTHER = IDENTITY.replace("acme/app", "acme/other")
TOKEN = "ci-token-0123456789abcdef"
TRUST = ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ACTIONS]
_runs = itertools.count()


@dataclass(frozen=True)
class Run:
    """One `sigverify verify` run: exit status, output, and the step summary it appended."""

    code: int
    stdout: str
    stderr: str
    summary: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SIGVERIFY_* or GitHub variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGVERIFY_", "GITHUB_"))}
    env.update(extra)
    return env


def run_cli(
    tmp_path: Path, *args: str, server: str | None, token: str | None = TOKEN, **env: str
) -> Run:
    summary = tmp_path / f"step-summary-{next(_runs)}.md"
    extra = {"GITHUB_STEP_SUMMARY": str(summary), **env}
    if server is not None:
        extra["SIGVERIFY_SERVER"] = server
    if token is not None:
        extra["SIGVERIFY_TOKEN"] = token
    result = subprocess.run(
        [SIGVERIFY, "verify", *args],
        env=client_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text = summary.read_text() if summary.exists() else ""
    return Run(result.returncode, result.stdout, result.stderr, text)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-policies") / "policies.yaml"
    path.write_text(
        "policies:\n"
        "  - name: release\n"
        "    tenant: ci\n"
        "    mode: enforce\n"
        f"    policy: {{certificateIdentity: '{IDENTITY}', certificateOidcIssuer: '{ACTIONS}'}}\n"
        "  - name: trial\n"
        "    tenant: ci\n"
        "    mode: audit\n"
        f"    policy: {{certificateIdentity: '{OTHER}', certificateOidcIssuer: '{ACTIONS}'}}\n"
    )
    return path


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, sigstore_local: LocalSigstore, policy_file: Path
) -> Iterator[ServiceServer]:
    with start_service(
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        policy_file=str(policy_file),
        api_tokens=f"ci={TOKEN}",
    ) as (server, _):
        yield server


@pytest.fixture
def signed(registry_signer: RegistrySigner) -> Image:
    image = registry_signer.image("cli/signed")
    registry_signer.sign(image)
    return image


def batch_calls(server: ServiceServer) -> list[str]:
    """The access-log lines of POST requests to the verify endpoints so far."""
    lines = server.log_path.read_text().splitlines()
    return [line for line in lines if '"POST' in line or '"method": "POST"' in line]


# -- against the service -------------------------------------------------------------------------


def test_a_verified_image_exits_0_and_says_who_signed_it(
    service: ServiceServer, signed: Image, tmp_path: Path
) -> None:
    run = run_cli(tmp_path, *TRUST, signed.tag_reference, server=service.url)
    assert run.code == 0, run.stderr
    assert f"{signed.tag_reference}: verified" in run.stdout
    assert f"digest:  {signed.digest}" in run.stdout
    assert f"signer:  {IDENTITY}" in run.stdout
    assert "1 of 1 image verified" in run.stdout
    assert run.summary.startswith("### sigverify: 1 of 1 image verified\n")
    assert "| image | digest | result | signer | reasons |" in run.summary
    assert f"| `` {signed.tag_reference} `` |" not in run.summary  # one backtick suffices
    assert f"| ` {signed.tag_reference} ` | ` {signed.digest} ` | ✅ verified |" in run.summary
    assert f"` {IDENTITY} ({ACTIONS}) `" in run.summary


def test_a_release_is_one_batch_call_with_an_answer_per_image(
    service: ServiceServer, registry_signer: RegistrySigner, signed: Image, tmp_path: Path
) -> None:
    unsigned = registry_signer.image("cli/unsigned")
    stranger = registry_signer.image("cli/stranger")
    registry_signer.sign(stranger, identity=registry_signer.signer.identity(OTHER))
    images = [signed.reference, unsigned.reference, stranger.reference]
    before = len(batch_calls(service))
    run = run_cli(tmp_path, *TRUST, *images, server=service.url)
    calls = batch_calls(service)[before:]
    assert len(calls) == 1 and "/v1/verify/batch" in calls[0], calls
    assert run.code == 1, run.stderr
    blocks = run.stdout.split("\n" + images[1])
    assert f"{images[0]}: verified" in blocks[0]
    assert blocks[1].startswith(": NOT VERIFIED")
    assert "reason:  no signatures found" in blocks[1]
    assert f"{images[2]}: NOT VERIFIED" in run.stdout
    assert f"signed by: {OTHER}" in run.stdout
    assert "1 of 3 images verified: 2 not verified" in run.stdout
    assert run.summary.count("❌ not verified") == 2
    assert f"signed by ` {OTHER} ({ACTIONS}) `" in run.summary

    as_json = run_cli(tmp_path, *TRUST, *images, "--output", "json", server=service.url)
    assert as_json.code == 1
    answer = as_json.json()
    check_body(answer, "BatchResult")
    assert [r["image"] for r in answer["results"]] == images
    assert [r["verdict"]["verified"] for r in answer["results"]] == [True, False, False]
    assert answer["verified"] is False and answer["passed"] is False
    # The step summary is written in JSON mode too.
    assert as_json.summary.count("✅ verified") == 1
    assert as_json.summary.count("❌ not verified") == 2


def test_an_image_that_cannot_be_verified_exits_2_and_a_bad_one_wins(
    service: ServiceServer, registry_signer: RegistrySigner, signed: Image, tmp_path: Path
) -> None:
    missing = f"{registry_signer.registry}/cli/missing:v0"
    run = run_cli(tmp_path, *TRUST, signed.reference, missing, server=service.url)
    assert run.code == 2, run.stdout + run.stderr
    assert f"{missing}: COULD NOT VERIFY (404)" in run.stdout
    assert "reason:  image-not-found: registry:" in run.stdout
    assert "⚠️ could not verify (404)" in run.summary
    unsigned = registry_signer.image("cli/unsigned-too")
    worse = run_cli(tmp_path, *TRUST, unsigned.reference, missing, server=service.url)
    assert worse.code == 1, "an image known to be bad is the answer, whatever else failed"


def test_a_wrong_identity_names_the_signer_and_what_was_expected(
    service: ServiceServer, signed: Image, tmp_path: Path
) -> None:
    expected = IDENTITY.replace("refs/heads/main", "refs/heads/release")
    args = ["--certificate-identity", expected, "--certificate-oidc-issuer", ACTIONS]
    run = run_cli(tmp_path, *args, signed.reference, server=service.url)
    assert run.code == 1
    reasons = [line for line in run.stdout.splitlines() if line.startswith("  reason:")]
    assert any(IDENTITY in r and expected in r for r in reasons), run.stdout
    regexp = [
        "--certificate-identity-regexp",
        r"^https://github\.com/acme/app/",
        "--certificate-oidc-issuer-regexp",
        r"^https://token\.actions\.",
    ]
    assert run_cli(tmp_path, *regexp, signed.reference, server=service.url).code == 0
    elsewhere = [*regexp[:2], "--certificate-oidc-issuer-regexp", r"^https://gitlab\."]
    assert run_cli(tmp_path, *elsewhere, signed.reference, server=service.url).code == 1
    claims = ["--certificate-github-workflow-repository", "acme/other"]
    assert run_cli(tmp_path, *TRUST, *claims, signed.reference, server=service.url).code == 1


def test_key_and_attestation_flags(
    service: ServiceServer, registry_signer: RegistrySigner, signed: Image, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "cosign.pub"
    pem.write_text(pem_public(key.public_key()))
    keyed = registry_signer.image("cli/keyed")
    registry_signer.sign_with_key(keyed, key, tlog=True)
    assert run_cli(tmp_path, "--key", str(pem), keyed.reference, server=service.url).code == 0
    other = tmp_path / "other.pub"
    other.write_text(pem_public(ec.generate_private_key(ec.SECP256R1()).public_key()))
    assert run_cli(tmp_path, "--key", str(other), keyed.reference, server=service.url).code == 1

    attested = registry_signer.image("cli/attested")
    registry_signer.sign(attested)
    registry_signer.attest(attested)  # SLSA provenance v1 by the same signer
    wanted = ["--attestation", "slsaprovenance1"]
    both = run_cli(tmp_path, *TRUST, *wanted, attested.reference, server=service.url)
    assert both.code == 0, both.stdout
    bare = run_cli(tmp_path, *TRUST, *wanted, signed.reference, server=service.url)
    assert bare.code == 1
    assert "attestation" in bare.stdout.split("reason:", 1)[1], bare.stdout


def test_named_policies_enforce_and_audit(
    service: ServiceServer, registry_signer: RegistrySigner, signed: Image, tmp_path: Path
) -> None:
    release = run_cli(tmp_path, "--policy", "release", signed.reference, server=service.url)
    assert release.code == 0, release.stderr
    assert "policy:  release (enforce)" in release.stdout
    unsigned = registry_signer.image("cli/unsigned-release")
    args = ["--policy", "release", unsigned.reference]
    assert run_cli(tmp_path, *args, server=service.url).code == 1
    # An audit policy's failure is reported and not enforced: the job goes on.
    trial = run_cli(tmp_path, "--policy", "trial", signed.reference, server=service.url)
    assert trial.code == 0, trial.stdout
    assert f"{signed.reference}: NOT VERIFIED (audit policy: not enforced)" in trial.stdout
    assert "0 of 1 image verified: 1 failed under an audit policy (not enforced)" in trial.stdout
    assert "not verified (audit policy: not enforced)" in trial.summary
    answer = run_cli(
        tmp_path, "--policy", "trial", "--output", "json", signed.reference, server=service.url
    ).json()
    assert answer["verified"] is False and answer["passed"] is True
    unknown = run_cli(tmp_path, "--policy", "nope", signed.reference, server=service.url)
    assert unknown.code == 2
    assert "404" in unknown.stderr and "--policy: no such policy" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "say whom to trust"),
        (["--policy", "release", "--certificate-identity", IDENTITY], "--policy and"),
        (["--key", "/nonexistent/cosign.pub"], "--key /nonexistent/cosign.pub: cannot read"),
        ([*TRUST, "--rekor-url", "http://127.0.0.1:1"], "--rekor-url applies to --local only"),
        ([*TRUST, "--local", "--server", "http://127.0.0.1:1"], "--server and --local"),
        ([*TRUST, "--timeout", "0"], "--timeout 0"),
        ([*TRUST, "--server", "ftp://127.0.0.1"], "expected an http(s) URL"),
        # Refused by the server (400), each field named by its flag.
        (
            ["--certificate-identity-regexp", "(", "--certificate-oidc-issuer", ACTIONS],
            "--certificate-identity-regexp:",
        ),
        ([*TRUST, "--attestation", ""], "--attestation:"),
        # As cosign: a keyless identity needs its issuer, and an issuer needs an identity.
        (TRUST[:2], "--certificate-oidc-issuer[-regexp] goes with"),
        (TRUST[2:], "--certificate-identity[-regexp] goes with"),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_fix(
    service: ServiceServer, signed: Image, tmp_path: Path, args: list[str], said: str
) -> None:
    run = run_cli(tmp_path, *args, signed.reference, server=service.url)
    assert run.code == 2, run.stdout + run.stderr
    assert said in run.stderr
    assert run.summary.startswith("### sigverify: could not verify\n")


@pytest.mark.parametrize("args", [["--output", "yaml"], ["--nope"], []])
def test_argument_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    assert run_cli(tmp_path, *args, server=None).code == 2


def test_a_refused_request_prints_the_servers_problem_as_json(
    service: ServiceServer, signed: Image, tmp_path: Path
) -> None:
    run = run_cli(tmp_path, *TRUST, "--output", "json", signed.reference, server=service.url,
                  token=None)  # fmt: skip
    assert run.code == 2
    problem = run.json()
    check_body(problem, "Problem")
    assert problem["status"] == 401
    assert "401" in run.stderr


def test_no_server_or_no_answer_exits_2(signed: Image, tmp_path: Path) -> None:
    nowhere = run_cli(tmp_path, *TRUST, signed.reference, server=None)
    assert nowhere.code == 2 and "no server" in nowhere.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    refused = run_cli(tmp_path, *TRUST, signed.reference, server=closed)
    assert refused.code == 2 and closed in refused.stderr
    # A server that takes the connection and never answers: the read timeout ends the wait.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        late = run_cli(tmp_path, *TRUST, "--timeout", "1", signed.reference, server=url)
    assert late.code == 2 and "no answer within 1 s" in late.stderr


# -- in this process: --local ---------------------------------------------------------------------


def local_flags(sigstore_local: LocalSigstore, registry: RegistryServer) -> list[str]:
    """The flags that point `--local` at the local Sigstore instance and the test registry."""
    return [
        "--local",
        "--trusted-root",
        str(sigstore_local.trusted_root_path),
        "--rekor-url",
        sigstore_local.url,
        "--insecure-registry",
        registry.host,
        "--allow-loopback",
    ]


# The outbound guard's allow-list, as the service under test has it: nothing leaves loopback.
LOOPBACK_ONLY = {"SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1,localhost"}


def test_local_gives_the_servers_verdicts(
    service: ServiceServer,
    registry_signer: RegistrySigner,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    signed = registry_signer.image("cli/local-signed")
    registry_signer.sign(signed)
    unsigned = registry_signer.image("cli/local-unsigned")
    images = [signed.tag_reference, unsigned.reference, f"{registry.host}/cli/missing:v1"]
    args = [*TRUST, "--output", "json", *images]
    remote = run_cli(tmp_path, *args, server=service.url)
    local = run_cli(
        tmp_path, *local_flags(sigstore_local, registry), *args, server=None, **LOOPBACK_ONLY
    )
    assert local.code == remote.code == 1, local.stderr
    answer = local.json()
    check_body(answer, "BatchResult")
    assert [r["status"] for r in answer["results"]] == [200, 200, 404]
    for mine, theirs in zip(answer["results"], remote.json()["results"], strict=True):
        assert mine["image"] == theirs["image"]
        assert mine["status"] == theirs["status"]
        if "verdict" not in theirs:
            assert mine["problem"]["type"] == theirs["problem"]["type"]
            continue
        for key in ("verified", "signers", "reasons", "enforced"):
            assert mine["verdict"][key] == theirs["verdict"][key], key
        assert mine["verdict"]["image"]["digest"] == theirs["verdict"]["image"]["digest"]
        assert mine["verdict"]["policy"]["digest"] == theirs["verdict"]["policy"]["digest"]
    text = run_cli(
        tmp_path, *local_flags(sigstore_local, registry), *TRUST, signed.reference,
        server=None, **LOOPBACK_ONLY,
    )  # fmt: skip
    assert text.code == 0, text.stderr
    assert f"signer:  {IDENTITY}" in text.stdout and "✅ verified" in text.summary


def test_local_needs_the_right_trust_root(
    sigstore_local: LocalSigstore, registry: RegistryServer, signed: Image, tmp_path: Path
) -> None:
    """Without --trusted-root the embedded production root is used, which never issued the
    local instance's certificates: the signature must fail, not pass."""
    flags = [f for f in local_flags(sigstore_local, registry)]
    i = flags.index("--trusted-root")
    del flags[i : i + 2]
    run = run_cli(tmp_path, *flags, *TRUST, signed.reference, server=None, **LOOPBACK_ONLY)
    assert run.code == 1, run.stdout + run.stderr
    assert "NOT VERIFIED" in run.stdout


def test_local_named_policies_and_settings(
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    policy_file: Path,
    signed: Image,
    tmp_path: Path,
) -> None:
    flags = [*local_flags(sigstore_local, registry), "--policy-file", str(policy_file)]
    release = run_cli(tmp_path, *flags, "--policy", "release", signed.reference, server=None,
                      **LOOPBACK_ONLY)  # fmt: skip
    assert release.code == 0, release.stderr
    trial = run_cli(tmp_path, *flags, "--policy", "trial", signed.reference, server=None,
                    **LOOPBACK_ONLY)  # fmt: skip
    assert trial.code == 0 and "audit policy: not enforced" in trial.stdout
    unknown = run_cli(tmp_path, *flags, "--policy", "nope", signed.reference, server=None,
                      **LOOPBACK_ONLY)  # fmt: skip
    assert unknown.code == 2 and "--policy nope: no such policy" in unknown.stderr
    # The guard of the service applies here too: loopback registries are refused unless allowed.
    guarded = [f for f in local_flags(sigstore_local, registry) if f != "--allow-loopback"]
    refused = run_cli(tmp_path, *guarded, *TRUST, signed.reference, server=None, **LOOPBACK_ONLY)
    assert refused.code == 2 and "registry-refused" in refused.stdout
    missing = run_cli(tmp_path, "--local", "--trusted-root", "/nonexistent.json", *TRUST,
                      signed.reference, server=None)  # fmt: skip
    assert missing.code == 2 and "--trusted-root /nonexistent.json: no such file" in missing.stderr
    bad_env = run_cli(tmp_path, *flags, *TRUST, signed.reference, server=None,
                      SIGVERIFY_WORKERS="many")  # fmt: skip
    assert bad_env.code == 2 and "SIGVERIFY_WORKERS='many'" in bad_env.stderr
    bad_regexp = run_cli(tmp_path, *flags, "--certificate-identity-regexp", "(",
                         "--certificate-oidc-issuer", ACTIONS, signed.reference, server=None,
                         **LOOPBACK_ONLY)  # fmt: skip
    assert bad_regexp.code == 2 and "--certificate-identity-regexp" in bad_regexp.stderr
