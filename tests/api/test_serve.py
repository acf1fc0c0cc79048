"""`sigverify serve` as a user runs it: gunicorn, real settings, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.api.auth import AUTH_OFF_WARNING
from tests.contract import CheckedClient
from tests.servers import RedisServer, ServiceServer, running


def test_serve_with_no_configuration_is_ready(tmp_path: Path) -> None:
    server = ServiceServer(tmp_path)
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok"
        assert ready["checks"]["signingKey"]["development"] is True
        # Both workers use the one development key made before they forked.
        key_ids = {client.get("/readyz").json()["checks"]["signingKey"]["keyId"] for _ in range(8)}
        assert len(key_ids) == 1
    assert "DEVELOPMENT key" in server.log_path.read_text()


def test_serve_uses_redis_when_configured(tmp_path: Path, redis_server: RedisServer) -> None:
    server = ServiceServer(tmp_path, env={"SIGVERIFY_REDIS_URL": redis_server.url})
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/readyz").json()["checks"]["cache"] == {"ok": True, "backend": "redis"}


def test_bad_setting_stops_serve_with_the_variable_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGVERIFY_")}
    env["SIGVERIFY_WORKERS"] = "many"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "sigverify"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SIGVERIFY_WORKERS='many'" in result.stderr


def test_serve_starts_beside_the_clients_variables_and_says_it_ignores_them(
    tmp_path: Path,
) -> None:
    """A CI job that starts the service and runs `sigverify verify` has SIGVERIFY_SERVER and
    SIGVERIFY_TOKEN set: the service starts, ignores them, and says that SIGVERIFY_TOKEN does
    not protect it (its tokens are SIGVERIFY_API_TOKENS)."""
    env = {"SIGVERIFY_SERVER": "http://127.0.0.1:1", "SIGVERIFY_TOKEN": "ci-token-0123456789"}
    server = ServiceServer(tmp_path, env=env)
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        # Still no auth: SIGVERIFY_TOKEN is the client's.
        assert AUTH_OFF_WARNING in client.get("/readyz").json()["warnings"]
    log = server.log_path.read_text()
    for name in env:
        assert f"{name} is read by `sigverify verify` (the client), not by the service" in log
    assert "ci-token-0123456789" not in log


def _serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGVERIFY_", "OTEL_"))}
    env.update({"SIGVERIFY_DATA_DIR": str(tmp_path / "data"), **settings})
    return subprocess.run(
        [str(Path(sys.executable).parent / "sigverify"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_settings_that_failed_later_stop_serve_in_one_line(tmp_path: Path) -> None:
    """Found from outside: an insecure registry given as a URL was accepted (and every request
    to it failed with an SSL error), a malformed Redis URL printed a traceback, and so did an
    unreadable docker config.json. Each is now the one line the other settings give."""
    docker_config = tmp_path / "config.json"
    docker_config.write_text("{not json")
    cases = {
        "SIGVERIFY_INSECURE_REGISTRIES": "http://127.0.0.1:5000",
        "SIGVERIFY_REDIS_URL": "127.0.0.1:6379",
        "SIGVERIFY_DOCKER_CONFIG": str(docker_config),
        "OTEL_BSP_MAX_QUEUE_SIZE": "0",
    }
    for name, value in cases.items():
        result = _serve(tmp_path, **{name: value})
        assert result.returncode == 2, (name, result.stderr)
        (line,) = [x for x in result.stderr.splitlines() if not x.startswith("{")]
        assert line.startswith(f"sigverify: configuration error: {name}"), line
        assert "Traceback" not in result.stderr


def test_keygen_into_a_missing_or_unusable_place_is_one_line(tmp_path: Path) -> None:
    """Found from outside: `sigverify keygen` into a missing directory printed a traceback."""
    sigverify = str(Path(sys.executable).parent / "sigverify")
    (tmp_path / "a-file").write_text("")
    for target, why in [
        (tmp_path / "missing" / "key.pem", "does not exist"),
        (tmp_path / "a-file" / "key.pem", "Not a directory"),
    ]:
        result = subprocess.run(
            [sigverify, "keygen", str(target)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"sigverify: cannot create {str(target)!r}: ")
        assert why in result.stderr and result.stderr.count("\n") == 1
        assert not target.exists()
    made = subprocess.run(
        [sigverify, "keygen", str(tmp_path / "key.pem")], capture_output=True, check=True
    )
    assert made.returncode == 0 and (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
