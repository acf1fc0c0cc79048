"""The sigstore-conformance `bundle-verify` suite, offline, through `sigverify conformance
verify-bundle` as the conformance harness calls it: every case twice, once with the artifact's
path and once with its `sha256:` digest (70 cases, 140 runs).

Cases without their own trusted root use the production root kept in tests/data, handed to the
command the way the service takes one (`SIGVERIFY_TRUST_ROOT_FILE`): TUF is not reachable here.
A case that cannot pass yet belongs in `KNOWN_MISMATCHES` with its reason; it then runs as a
strict xfail, so fixing it fails the run until the entry goes. The session ends with a count
(tests/conformance/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from tests.conformance.cases import CASES, PRODUCTION_ROOT, Case, all_cases, load

CASE_COUNT = 70  # upstream MANIFEST: test/assets/bundle-verify at the pinned commit
FORMS = ("path", "digest")
KNOWN_MISMATCHES: dict[str, str] = {}
"""Case name -> why sigverify does not match its expected outcome yet (none today)."""

SCRIPT = Path(sys.executable).with_name("sigverify")


@pytest.fixture(autouse=True)
def production_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default trust root (no `--trusted-root`) is the production copy in tests/data."""
    monkeypatch.setenv("SIGVERIFY_TRUST_ROOT_FILE", str(PRODUCTION_ROOT))
    monkeypatch.delenv("SIGVERIFY_TUF_URL", raising=False)


def target(case: Case, form: str) -> str:
    return str(case.artifact) if form == "path" else case.digest


def _runs() -> Iterator[Any]:
    for case in all_cases():
        marks = []
        if case.name in KNOWN_MISMATCHES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[case.name]))
        for form in FORMS:
            yield pytest.param(case, form, id=f"{case.name}-{form}", marks=marks)


def test_every_case_is_here() -> None:
    cases = all_cases()
    assert len(cases) == CASE_COUNT
    assert set(KNOWN_MISMATCHES) <= {c.name for c in cases}
    assert all(c.bundle.exists() and c.artifact.exists() for c in cases)


@pytest.mark.parametrize(("case", "form"), list(_runs()))
def test_case(case: Case, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    wanted = target(case, form)
    status = main(case.argv(wanted))
    out, err = capsys.readouterr()
    if case.expected:
        assert status == 0, err
        assert out == f"OK: {wanted}\n"
    else:
        assert status != 0, f"{case.name} is a fail case and was accepted"
        assert out == ""
        assert err.startswith("sigverify: "), err


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("happy-path-v0.1", "path"),
        ("rekor2-dsse-happy-path", "digest"),
        ("managed-key-happy-path", "digest"),
        ("intoto-with-custom-trust-root", "path"),
        ("wrong-material_fail", "path"),
        ("dsse-mismatch-sig_fail", "digest"),
        ("trust-root-tlog-missing-validity-start_fail", "digest"),
    ],
)
def test_console_script(name: str, form: str) -> None:
    """The installed `sigverify` entry point, as the harness runs it: a separate process."""
    case = load(CASES / name)
    env = {**os.environ, "SIGVERIFY_TRUST_ROOT_FILE": str(PRODUCTION_ROOT)}
    done = subprocess.run(
        [str(SCRIPT), *case.argv(target(case, form))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if case.expected:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("OK: ")
    else:
        assert done.returncode != 0
        assert "sigverify: " in done.stderr
