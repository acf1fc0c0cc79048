"""The `sigverify` command itself: its version, `serve --help`, and `scripts/serve.sh`."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from service.config import CLIENT_VARIABLES, SETTINGS

ROOT = Path(__file__).parent.parent
SIGVERIFY = str(Path(sys.executable).parent / "sigverify")


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGVERIFY_")}
    return subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_version() -> None:
    result = run(SIGVERIFY, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        f"sigverify {version('sigverify')} (sigstore-python {version('sigstore')})"
    )


def test_serve_help_names_every_setting_with_its_default() -> None:
    result = run(SIGVERIFY, "serve", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for setting in SETTINGS:
        assert f"  {setting.env} (default: {setting.default or 'empty'})\n" in text, setting.env
    for name in CLIENT_VARIABLES:
        assert name in text.split("read by `sigverify verify`", 1)[1]


def test_serve_sh_passes_on_only_what_serve_accepts() -> None:
    """scripts/serve.sh adds nothing of its own: `--help` is serve's, anything else serve
    refuses with its usage and exit status 2 (before anything starts)."""
    script = str(ROOT / "scripts" / "serve.sh")
    helped = run(script, "--help", timeout=300)  # the first run may install into .venv
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: sigverify serve")
    assert "SIGVERIFY_BIND (default: 127.0.0.1:8080)" in helped.stdout
    for refused in (["--bind", "0.0.0.0:8080"], ["--workers=4"], ["extra"]):
        result = run(script, *refused)
        assert result.returncode == 2, refused
        assert "usage: sigverify serve" in result.stderr
        assert "unrecognized arguments" in result.stderr
