"""The README's curl examples, run as written against the real service under gunicorn.

Examples that name an image on a public registry cannot run here (no internet; the service under
test refuses every host but loopback by its allow-list, before any lookup): they are skipped by
this test and covered by the e2e tests with local images. Every other example runs, and an
example that shows its output (`$ curl ...` followed by JSON) must print exactly that JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import ServiceFactory

README = Path(__file__).parents[2] / "README.md"
SHOWN = "127.0.0.1:8080"


def examples() -> list[tuple[str, str]]:
    """(command, shown output) for every curl example in the README's sh blocks."""
    found: list[tuple[str, str]] = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if "curl " not in line:
                i += 1
                continue
            command = line
            while command.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command.rstrip()[:-1] + " " + lines[i].strip()
            output: list[str] = []
            if command.startswith("$ "):
                while i + 1 < len(lines) and lines[i + 1] and not lines[i + 1].startswith("$"):
                    i += 1
                    output.append(lines[i])
            found.append((command.removeprefix("$ "), "\n".join(output)))
            i += 1
    return found


def runnable(command: str, shown: str) -> bool:
    """Whether the example can run here: local endpoints, or input refused before any fetch."""
    if "-d '{" in command and not shown:
        return False  # a multi-line body or a real image: covered by the e2e tests instead
    if any(s in command for s in ("$TOKEN", "@request.json", "@-", "--cacert", "examples/")):
        return False
    return "ghcr.io" not in command or bool(shown)


def test_readme_curl_examples_run_against_the_service(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    cases = [(c, s) for c, s in examples() if runnable(c, s)]
    assert len(cases) >= 10, cases
    with start_service() as (server, _):
        host = server.url.removeprefix("http://")
        for command, shown in cases:
            result = subprocess.run(
                ["bash", "-c", command.replace(SHOWN, host)],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                timeout=30,
                check=False,
            )
            assert result.returncode == 0, (command, result.stderr)
            if command.rstrip().endswith((">", "verdict-key.pem")) or "> " in command:
                continue
            assert result.stdout.strip(), command
            if shown:
                assert json.loads(result.stdout) == json.loads(shown), command
