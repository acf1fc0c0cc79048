"""The protocol details of `sigverify conformance verify-bundle` beyond the cases themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from service.conformance import artifact_digest
from tests.conformance.cases import CASES, PRODUCTION_ROOT, load

HAPPY = load(CASES / "happy-path-v0.3")
WRONG_INSTANCE = load(CASES / "bundle-from-wrong-instance_fail")  # a valid staging bundle


@pytest.fixture(autouse=True)
def production_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGVERIFY_TRUST_ROOT_FILE", str(PRODUCTION_ROOT))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_digest_is_sha256_and_64_hex() -> None:
    hex_digest = "A0CFC71271D6E278E57CD332FF957C3F7043FDDA354C4CBB190A30D56EFA01BF"
    assert artifact_digest("sha256:" + hex_digest) == "sha256:" + hex_digest.lower()


@pytest.mark.parametrize("text", ["sha256:abc", "sha512:" + "0" * 128, "sha256:" + "g" * 64])
def test_anything_else_is_a_path(text: str) -> None:
    with pytest.raises(Exception, match="cannot read"):
        artifact_digest(text)


def test_an_existing_path_wins_over_the_digest_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "sha256:" + "0" * 64
    (tmp_path / name).write_bytes(b"hello")
    monkeypatch.chdir(tmp_path)
    expected = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert artifact_digest(name) == expected


def test_staging_uses_the_staging_root_offline(capsys: pytest.CaptureFixture[str]) -> None:
    argv = WRONG_INSTANCE.argv(WRONG_INSTANCE.digest)
    assert run(argv, capsys)[0] == 1
    status, out, err = run([*argv[:2], "--staging", *argv[2:]], capsys)
    assert status == 0, err
    assert out.startswith("OK: ")


def test_a_trusted_root_overrides_staging(capsys: pytest.CaptureFixture[str]) -> None:
    argv = WRONG_INSTANCE.argv(WRONG_INSTANCE.digest)
    overridden = [*argv[:2], "--staging", *argv[2:-1], "--trusted-root", str(PRODUCTION_ROOT)]
    assert run([*overridden, argv[-1]], capsys)[0] == 1


def test_failure_names_the_failed_check(capsys: pytest.CaptureFixture[str]) -> None:
    argv = HAPPY.argv(HAPPY.digest)
    argv[argv.index("--certificate-identity") + 1] = "https://github.com/someone/else"
    status, out, err = run(argv, capsys)
    assert (status, out) == (1, "")
    assert "identity: signed by" in err
    assert "expected https://github.com/someone/else" in err


@pytest.mark.parametrize(
    ("drop", "fragment"),
    [
        (["--certificate-oidc-issuer"], "go together"),
        (["--certificate-identity", "--certificate-oidc-issuer"], "or --key"),
    ],
)
def test_usage_errors_exit_2(
    drop: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = HAPPY.argv(HAPPY.digest)
    for flag in drop:
        at = argv.index(flag)
        del argv[at : at + 2]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert fragment in err


def test_unreadable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = HAPPY.argv(str(tmp_path / "missing-artifact"))
    status, _, err = run(argv, capsys)
    assert (status, "artifact") == (2, err.split()[1])
    argv = HAPPY.argv(HAPPY.digest)
    argv[argv.index("--bundle") + 1] = str(tmp_path / "missing.json")
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "--bundle" in err


def test_a_refused_trusted_root_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps({"mediaType": "application/json"}))
    argv = [*HAPPY.argv(HAPPY.digest)[:-1], "--trusted-root", str(root), HAPPY.digest]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert f"trusted root from {root}" in err
